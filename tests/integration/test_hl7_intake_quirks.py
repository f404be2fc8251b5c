"""Intake rules over the real store: refused bodies store nothing, reused MSH-10, the sending-facility
binding, safe keys for any appointment ID, capped ``ttl`` values, visits already over, offset log lines.

Each test builds its own fictional messages (numbers 555-01xx) and posts them, signed, to the HTTP function.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import appointment_key
from lib.observability import metrics
from lib.scheduling.apply import PAST_VISIT_TTL_SECONDS
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7, segment
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2030, 1, 10, 15, 0, tzinfo=UTC)
START = datetime(2030, 1, 20, 19, 0, tzinfo=UTC)


def message(event: str = "S12", *, csn: str = "IR-1", control_id: str = "C1", minutes_after: int = 0,
            start: datetime = START, **kw: object) -> bytes:
    sent = datetime(2030, 1, 10, 14, 0, tzinfo=UTC) + timedelta(minutes=minutes_after)
    return siu(event, csn=csn, start=start, control_id=control_id, sent=sent, **kw)  # type: ignore[arg-type]


@pytest.fixture
def env(app, clock, environment_id):
    clock.set(NOW)
    make_environment(app, environment_id)
    return environment_id


def stored(app, env: str, csn: str = "IR-1"):
    return app.repos.appointments.get(appointment_key(env, csn))


# ---------------------------------------------------------------- refused bodies store nothing


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("NUL in a field", message().replace(b"PATIENT^DEMO", b"PATI\x00ENT^DEMO")),
        ("two messages", message() + message(csn="IR-2", control_id="C2")),
        ("invalid UTF-8", message().replace(b"|2.3\r", b"|2.3||||||UNICODE UTF-8\r").replace(b"DEMO", b"D\xffMO")),
        ("MSH-2 too short", message().replace(b"MSH|^~\\&|", b"MSH|^~|", 1)),
        ("version 2.2", message().replace(b"|T|2.3\r", b"|T|2.2\r")),
    ],
)
def test_refused_body_gets_ar_echoing_msh10_and_nothing_is_applied(app, env, name, body):
    response = post_hl7(env, body)
    assert response.status_code == 200
    fields = msa(response)
    assert (fields[1], fields[2]) == ("AR", "C1")
    assert segment(response, "ERR") is not None
    assert stored(app, env) is None and stored(app, env, "IR-2") is None


# ---------------------------------------------------------------- MSH-10 reused


def test_same_msh10_same_body_gets_the_stored_ack_and_a_different_body_gets_ar_and_a_metric(app, env):
    first = post_hl7(env, message())
    assert msa(first)[1] == "AA"
    again = post_hl7(env, message())
    assert again.get_body() == first.get_body()  # the very same ACK: a resend
    before = metrics.total(metrics.HL7_CONTROL_ID_REUSED, environment=env)
    reused = post_hl7(env, message("S14", duration_minutes=45))
    fields = msa(reused)
    assert (fields[1], fields[2]) == ("AR", "C1")
    assert "205" in "|".join(segment(reused, "ERR"))
    assert metrics.total(metrics.HL7_CONTROL_ID_REUSED, environment=env) == before + 1
    assert stored(app, env).duration_minutes == 30  # the second body was not applied
    assert len(app.repos.rejected.list(env)) == 1  # kept for the operator


# ---------------------------------------------------------------- MSH-4 binding


def test_a_message_from_another_facility_is_refused_403_when_the_environment_is_bound(app, clock, environment_id):
    clock.set(NOW)
    env = make_environment(app, environment_id, hl7_sending_facilities=("OTHER HOSPITAL",)).id
    response = post_hl7(env, message())
    assert response.status_code == 403
    assert json.loads(response.get_body())["code"] == "sending_facility_not_allowed"
    assert stored(app, env) is None and app.repos.rejected.list(env) == []


@pytest.mark.parametrize("binding", [("DEMO HOSPITAL",), ("demo hospital", "OTHER"), ()])
def test_a_message_from_a_bound_facility_or_an_unbound_environment_is_accepted(app, clock, environment_id, binding):
    clock.set(NOW)
    env = make_environment(app, environment_id, hl7_sending_facilities=binding).id
    assert msa(post_hl7(env, message()))[1] == "AA"


# ---------------------------------------------------------------- safe keys


@pytest.mark.parametrize("csn", ["A/1", "B\\2", "C?3", "D#4", "~E5", "F" * 240])
def test_any_appointment_id_is_stored_under_a_safe_key_and_found_again(app, env, csn):
    raw_csn = csn.replace("\\", "\\E\\").replace("~", "\\R\\")  # HL7-escaped in the message
    assert msa(post_hl7(env, message(csn=raw_csn)))[1] == "AA"
    key = appointment_key(env, csn)
    assert len(key) <= 255 and not set("/\\?#") & set(key)
    found = app.repos.appointments.get(key)
    assert (found.appointment_id, found.status) == (csn, "booked")
    assert app.repos.contacts.phone(key, now=NOW) == "+12015550123"
    assert msa(post_hl7(env, message("S15", csn=raw_csn, control_id="C2", minutes_after=5)))[1] == "AA"
    assert app.repos.appointments.get(key).status == "cancelled"


def test_msh10_and_msh4_that_cannot_be_in_a_cosmos_id_still_deduplicate(app, env):
    body = message(control_id="X/1#2").replace(b"|DEMO HOSPITAL|", b"|DEMO/HOSP?|")
    first = post_hl7(env, body)
    assert msa(first)[1:3] == ["AA", "X/1#2"]
    assert post_hl7(env, body).get_body() == first.get_body()


# ---------------------------------------------------------------- ttl and visits over


def test_a_visit_decades_ahead_is_refused_and_stores_nothing(app, env):
    far = datetime(2099, 6, 1, 14, 0, tzinfo=UTC)
    assert msa(post_hl7(env, message(start=far)))[1] == "AR"  # lib/scheduling/visit_window.py
    assert app.repos.appointments.get(appointment_key(env, "IR-1")) is None
    assert app.repos.contacts.phone(appointment_key(env, "IR-1"), now=NOW) is None


def test_a_visit_already_over_is_stored_minimally_with_a_short_ttl_no_phone_no_texts(app, env):
    over = NOW - timedelta(days=3)
    assert msa(post_hl7(env, message(start=over)))[1] == "AA"
    appointment = stored(app, env)
    assert (appointment.status, appointment.ttl, appointment.outbox_refs) == ("booked", PAST_VISIT_TTL_SECONDS, [])
    key = appointment_key(env, "IR-1")
    doc = app.store.container("visits").read_item(item=key, partition_key=key)
    assert doc["ttl"] == PAST_VISIT_TTL_SECONDS
    assert list(app.store.container("visits").query_items(
        "SELECT c.id FROM c WHERE c.appointmentKey = @k AND c.type = 'phone'",
        parameters=[{"name": "@k", "value": key}], partition_key=key,
    )) == []
    assert app.repos.rejected.list(env) == []


def test_a_visit_moved_from_the_past_to_the_future_loses_its_short_ttl(app, env):
    assert msa(post_hl7(env, message(start=NOW - timedelta(days=3))))[1] == "AA"
    assert msa(post_hl7(env, message("S13", control_id="C2", minutes_after=5)))[1] == "AA"
    appointment = stored(app, env)
    assert (appointment.ttl, appointment.start_utc) == (None, START)
    assert app.repos.contacts.phone(appointment.key, now=NOW) == "+12015550123"


# ---------------------------------------------------------------- offsets


def test_an_offset_that_disagrees_with_the_zone_is_logged_without_phi(app, env, caplog):
    body = message().replace(b"|^^^203001201400|", b"|^^^203001201400+0200|")
    with caplog.at_level(logging.WARNING, logger="lib.scheduling.intake"):
        assert msa(post_hl7(env, body))[1] == "AA"
    lines = [r.getMessage() for r in caplog.records if "offset disagrees" in r.getMessage()]
    assert lines == [
        f"hl7 time offset disagrees with the environment zone env={env} msh10=C1 "
        "SCH-11.4 offset +02:00 differs from America/New_York (-05:00 at that time)"
    ]
    assert "555" not in lines[0] and "PATIENT" not in lines[0]
