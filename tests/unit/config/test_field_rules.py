"""Single-field rules of an environment (lib/field_rules.py), as the portal's form and API apply them through
pydantic (``lib.config.environments.STORED``), and a stored value from before they existed."""

from __future__ import annotations

from typing import Any

import pytest

from lib.config.environments import (
    STORED,
    EnvironmentChange,
    field_problems,
    invalid_stored_fields,
    pydantic_problems,
    without_broken_values,
)
from lib.models import EnvironmentConfig
from lib.web.policy import ContentPolicy

BASE: dict[str, Any] = {"id": "fr-test", "kind": "test", "display_name": "Northwind Clinics",
                        "fhir_base_urls": ["https://ehr.northwind.example/api/FHIR/R4"], "approved": False,
                        "epic_client_id": "nw-client"}


def refusal(**change: Any) -> dict[str, str]:
    """Field -> message of the refusal of ``BASE`` with ``change`` (fails when it is accepted)."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        STORED.validate_python({**BASE, **change})
    return {p.field: p.message for p in pydantic_problems(err.value)}


def accepted(**change: Any) -> EnvironmentConfig:
    return STORED.validate_python({**BASE, **change})


# ---- H1 appointment ID fields ---------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [["SCH2"], ["SCH-2.1"], ["ZZZ-99"], ["SCH-0"], ["<script>"], ["SCH-2", "sch-2"]])
def test_appointment_id_fields_other_than_sch2_sch1_pv119_or_repeated_are_refused(order: list[str]):
    message = refusal(appointment_id_order=order)["appointment_id_order"]
    assert "SCH-2, SCH-1 or PV1-19" in message or "listed twice" in message
    assert not message.startswith("appointment_id_order: Value error")


def test_an_empty_appointment_id_list_is_refused():
    assert "at least one appointment ID field" in refusal(appointment_id_order=[])["appointment_id_order"]


def test_spacing_and_case_are_forgiven_and_the_order_is_kept():
    assert accepted(appointment_id_order=[" pv1-19 ", "sch - 1"]).appointment_id_order == ("PV1-19", "SCH-1")


# ---- H2 frame origins -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("origin", ["https://a.example/", "X-Evil: 1", "'unsafe-inline' *", "*",
                                    "https://*.example", "https://A.example"])
def test_frame_origins_that_are_not_https_origins_are_refused(origin: str):
    assert "a frame origin is https://host" in refusal(frame_origins=[origin])["frame_origins"]


def test_a_frame_origin_with_a_port_is_accepted():
    assert accepted(frame_origins=["https://epic.northwind.example:8443"]).frame_origins == (
        "https://epic.northwind.example:8443",)


def test_the_csp_drops_stored_values_that_are_not_origins_but_keeps_the_origins():
    policy = ContentPolicy(frame_ancestors=("https://epic.northwind.example", "X-Evil: 1", "'unsafe-inline' *", "*",
                                            "https://a.example/"))
    directive = [p for p in policy.header().split("; ") if p.startswith("frame-ancestors")]
    assert directive == ["frame-ancestors 'self' https://epic.northwind.example"]


def test_only_the_refused_frame_page_may_be_framed_by_anyone():
    assert "frame-ancestors 'self' *" in ContentPolicy(frame_anyone=True).header()
    assert "frame-ancestors 'self';" in ContentPolicy(frame_ancestors=("*",)).header() + ";"


# ---- H3 whole numbers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [
    ("writeback_retry_horizon_minutes", 99999999999999999999999), ("writeback_retry_horizon_minutes", 1e23),
    ("writeback_retry_horizon_minutes", -1), ("writeback_retry_horizon_minutes", True),
    ("writeback_retry_horizon_minutes", 4), ("writeback_retry_horizon_minutes", 10081),
    ("writeback_retry_horizon_minutes", 60.5), ("writeback_retry_horizon_minutes", "1e3"),
    ("writeback_retry_horizon_minutes", "60"), ("encrypted_max_age_seconds", 1e3),
    ("encrypted_max_age_seconds", 1000.0),
    ("monthly_visit_allocation", -5), ("monthly_visit_allocation", 10**20), ("monthly_visit_allocation", False),
    ("encrypted_max_age_seconds", 0), ("encrypted_max_age_seconds", True),
])
def test_whole_number_settings_refuse_odd_values_with_their_range(field: str, value: Any):
    message = refusal(**{field: value})[field]
    assert "use a whole number of" in message and " from " in message


def test_whole_numbers_are_json_integers_within_range():
    assert accepted(writeback_retry_horizon_minutes=10080).writeback_retry_horizon_minutes == 10080
    assert accepted(writeback_retry_horizon_minutes=5).writeback_retry_horizon_minutes == 5
    assert accepted(monthly_visit_allocation=0).monthly_visit_allocation == 0
    assert accepted(monthly_visit_allocation=None).monthly_visit_allocation is None


@pytest.mark.parametrize("offsets", [[525600000], [0], [-60], [True], [43201]])
def test_reminder_times_are_whole_minutes_within_30_days(offsets: list[Any]):
    problems = refusal(sms={"reminder_offsets_minutes": offsets})
    assert "from 1 to 43200" in problems["sms.reminder_offsets_minutes"]
    assert problems["sms.reminder_offsets_minutes"].startswith("entry 1: ")


def test_the_api_body_refuses_a_boolean_horizon_before_it_is_merged():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="whole number of minutes from 5 to 10080"):
        EnvironmentChange.model_validate({"writeback_retry_horizon_minutes": True})


def test_a_broken_stored_value_is_reset_unless_the_change_sets_it():
    stored = {**BASE, "writeback_retry_horizon_minutes": 1e23, "monthly_visit_allocation": -5,
              "sms": {"reminder_offsets_minutes": [525600000, 60]}}
    assert set(invalid_stored_fields(stored)) == {"writeback_retry_horizon_minutes", "monthly_visit_allocation",
                                                  "sms"}
    repaired, reset = without_broken_values(stored, keep={"monthly_visit_allocation"})
    assert sorted(reset) == ["sms.reminder_offsets_minutes", "writeback_retry_horizon_minutes"]
    assert repaired["writeback_retry_horizon_minutes"] == 1440 and repaired["monthly_visit_allocation"] == -5
    assert repaired["sms"]["reminder_offsets_minutes"] == (1440, 60)


# ---- M4 time zone, M8 algorithm and vendor name, L8 display name ----------------------------------------------
@pytest.mark.parametrize("zone", ["A" * 300, "America/" + "x" * 300, "../../etc/passwd", "Mars/Olympus", "",
                                  "America/New_York\n"])
def test_time_zones_are_checked_by_shape_before_zoneinfo(zone: str):
    assert "is not an IANA time zone such as America/Chicago" in refusal(time_zone=zone)["time_zone"]


def test_the_client_assertion_algorithm_is_rs384_or_es384():
    assert "'RS384' or 'ES384'" in refusal(client_assertion_alg="bogus")["client_assertion_alg"]
    assert accepted(client_assertion_alg="ES384").client_assertion_alg == "ES384"


@pytest.mark.parametrize("name", ["", "  ", "Open\x00Visits", "Open\r\nVisits", "V" * 70_000])
def test_the_vendor_name_is_one_short_line(name: str):
    assert "1 to 64 characters on one line" in refusal(writeback_vendor_name=name)["writeback_vendor_name"]


@pytest.mark.parametrize(("name", "expected"), [
    ("North\x00wind", "one line without control characters"), ("North\nwind", "one line"),
    ("Northwind\tClinics", "one line"), ("", "1 to 80 characters"), ("N" * 81, "1 to 80 characters")])
def test_the_display_name_gets_a_message_about_the_name(name: str, expected: str):
    assert expected in refusal(display_name=name)["display_name"]


def test_a_configuration_built_in_code_is_checked_field_by_field_too():
    import dataclasses

    config = dataclasses.replace(accepted(), time_zone="Z" * 300, frame_origins=("*",))
    assert {p.field for p in field_problems(config)} == {"time_zone", "frame_origins"}



# ---- L2 branded link -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["https://user:pw@x.example", "https://user@x.example", "https://:pw@x.example"])
def test_a_join_link_address_with_credentials_is_refused(url: str):
    from lib.sms.configuration import join_link_problems

    assert any("must not contain a user name or password" in p for p in join_link_problems(url))
    assert join_link_problems("https://visits.northwind.example") == []


def test_a_name_outside_the_sms_alphabet_is_named_in_the_segment_message():
    from lib.models import SmsSettings
    from lib.sms.configuration import validate_sms_settings

    config = accepted(display_name="Северная клиника Нортвинд", sms=SmsSettings())
    problems = " ".join(validate_sms_settings(config, public_base_url="https://vv.northwind.example"))
    assert "the organization name has characters outside the SMS alphabet" in problems
