"""Routing, identifiers, status, department, provider, visit type, language, escapes (hl7.md §1-§3, §7)."""

from __future__ import annotations

import dataclasses

import pytest

from lib.hl7.errors import HL7Rejected
from lib.hl7.siu import ConfigurationProblem, SiuMessage, parse_siu
from tests.unit.hl7.samples import load_sample, seg, siu

START = "^^^202601200900"


def parse(raw: bytes, **kw) -> SiuMessage:
    return parse_siu(raw, time_zone="America/New_York", default_region="US", **kw)


def rejected(raw: bytes) -> HL7Rejected:
    with pytest.raises(HL7Rejected) as info:
        parse(raw)
    return info.value


# --- routing (MSH-9) ----------------------------------------------------------------------------


def test_routing_ignores_msh9_3_structure():
    raw = siu(f"SCH||A1|||||||||{START}", event="S15^SIU_S12")
    assert parse(raw).event == "S15"


def test_non_siu_message_type_is_rejected_200_ar():
    e = rejected(load_sample("27"))
    assert (e.err_code, e.ack_code, e.location) == ("200", "AR", "MSH^1^9")


@pytest.mark.parametrize("event", ["S16", "S18", "Z02", "A01"])
def test_unsupported_siu_event_is_rejected_201(event):
    assert rejected(siu(f"SCH||A1|||||||||{START}", event=event)).err_code == "201"


def test_missing_trigger_event_is_rejected_101():
    raw = siu(f"SCH||A1|||||||||{START}").replace(b"SIU^S12", b"SIU")
    assert rejected(raw).err_code == "101"


def test_unsupported_processing_id_is_rejected_202():
    assert rejected(siu(f"SCH||A1|||||||||{START}", msh_extra="X|2.5")).err_code == "202"


def test_unsupported_version_is_rejected_203():
    assert rejected(siu(f"SCH||A1|||||||||{START}", msh_extra="P|3.0")).err_code == "203"


def test_missing_control_id_is_rejected_101():
    e = rejected(siu(f"SCH||A1|||||||||{START}", control_id=""))
    assert (e.err_code, e.location) == ("101", "MSH^1^10")


# --- status follows the trigger event -----------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("S12", "booked"),
        ("S13", "booked"),
        ("S14", "booked"),
        ("S15", "cancelled"),
        ("S17", "deleted"),
        ("S26", "noshow"),
    ],
)
def test_status_follows_trigger_event(event, status):
    raw = siu(f"SCH||A1|||||||||{START}||||||||||||||Booked", event=event)
    m = parse(raw)
    assert (m.status, m.filler_status_hint) == (status, "Booked")


def test_s15_status_follows_trigger_not_sch25():
    m = parse(load_sample("14"))
    assert (m.event, m.status, m.filler_status_hint) == ("S15", "cancelled", "Deleted")


def test_s26_status_follows_trigger_not_sch25_cancelled():
    m = parse(load_sample("11"))
    assert (m.status, m.filler_status_hint) == ("noshow", "Cancelled")


# --- segments located by ID ---------------------------------------------------------------------


def test_no_sch_segment_is_rejected_101_saying_sch_is_missing():
    e = rejected(siu("PID|1||MRN1"))
    assert e.err_code == "101"
    assert "SCH segment is missing" in e.reason


def test_segment_order_does_not_matter_and_z_segments_are_ignored():
    raw = siu(
        "ZXX|1|whatever",
        seg("PID", {1: "1", 3: "MRN1", 5: "DOE^JANE", 15: "spa"}),
        "EVN|S12|20260110",
        "AIP|1||DOC9",
        f"SCH||A1|||||||||{START}",
        "NTE|1||note",
        "OBX|1|TX|X||text",
        "ZCH|1",
    )
    m = parse(raw)
    assert (m.appointment_id, m.provider_ehr_id, m.language) == ("A1", "DOC9", "es")


def test_repeated_resource_groups_are_tolerated_first_valued_wins():
    raw = siu(
        f"SCH||A1|||||||||{START}",
        "RGS|1",
        "AIL|1||",
        "AIP|1||^NoId^Doc",
        "RGS|2",
        "AIL|1||CLIN2^Clinic Two",
        "AIP|1||DOC2",
    )
    m = parse(raw)
    assert (m.department, m.department_name, m.provider_ehr_id) == ("CLIN2", "Clinic Two", "DOC2")


# --- appointment identifiers --------------------------------------------------------------------


def test_appointment_id_prefers_filler_sch2():
    m = parse(siu(seg("SCH", {1: "P1^PLACER", 2: "F1^EPIC", 11: START}), seg("PV1", {2: "O", 19: "V1"})))
    assert (m.appointment_id, m.appointment_id_source, m.placer_id, m.filler_id, m.visit_number) == (
        "F1",
        "SCH-2",
        "P1",
        "F1",
        "V1",
    )


def test_appointment_id_falls_back_to_placer_sch1():
    m = parse(siu(f"SCH|P1||||||||||{START}"))
    assert (m.appointment_id, m.appointment_id_source) == ("P1", "SCH-1")


def test_appointment_id_falls_back_to_pv1_19():
    m = parse(siu(seg("SCH", {11: START}), seg("PV1", {2: "O", 19: "V1^^^EPIC^VN"})))
    assert (m.appointment_id, m.appointment_id_source) == ("V1", "PV1-19")


def test_appointment_id_order_is_configurable():
    raw = siu(seg("SCH", {1: "P1", 2: "F1", 11: START}), seg("PV1", {2: "O", 19: "V1"}))
    m = parse(raw, appointment_id_order=("PV1-19", "SCH-2"))
    assert (m.appointment_id, m.appointment_id_source) == ("V1", "PV1-19")


def test_null_filler_id_is_empty():
    m = parse(siu(seg("SCH", {1: "P1", 2: '""', 11: START})))
    assert (m.appointment_id, m.filler_id) == ("P1", None)


def test_no_appointment_id_is_rejected_101():
    e = rejected(siu(seg("SCH", {11: START})))
    assert (e.err_code, e.location) == ("101", "SCH^1^2")


@pytest.mark.parametrize(("order", "expected"), [(("SCH-26",), "'SCH-26' not SCH-2/SCH-1/PV1-19"),
                                                ((), "empty: name at least one of SCH-2, SCH-1, PV1-19")])
def test_unknown_or_missing_appointment_id_sources_are_a_configuration_problem(order, expected):
    with pytest.raises(ConfigurationProblem) as problem:
        parse(siu(f"SCH||A1|||||||||{START}"), appointment_id_order=order)
    assert (problem.value.setting, problem.value.message) == ("appointment_id_order", expected)


def test_an_unloadable_time_zone_is_a_configuration_problem_not_an_os_error():
    with pytest.raises(ConfigurationProblem) as problem:
        parse_siu(siu(f"SCH||A1|||||||||{START}"), time_zone="A" * 300, default_region="US")
    assert problem.value.setting == "time_zone" and problem.value.message.startswith("unknown IANA time zone")


def test_an_unknown_phone_region_names_its_setting():
    with pytest.raises(ConfigurationProblem) as problem:
        parse_siu(siu(f"SCH||A1|||||||||{START}"), time_zone="America/Chicago", default_region="XX")
    assert str(problem.value) == "default_region: unknown phone region 'XX'"


def test_conference_id_is_none_for_now():
    assert parse(siu(f"SCH||A1|||||||||{START}")).conference_id is None


# --- department, provider, visit type, language -------------------------------------------------


def test_department_from_ail3_facility_when_component_1_empty():
    m = parse(siu(f"SCH||A1|||||||||{START}", "RGS|1", "AIL|1||^^^NORTH CLINIC"))
    assert m.department == "NORTH CLINIC"


def test_department_from_pv1_3_then_rgs_3():
    m = parse(siu(f"SCH||A1|||||||||{START}", "PV1|1|O|IM^Internal Medicine", "RGS|1||1^INTERNAL MEDICINE"))
    assert (m.department, m.department_name) == ("IM", "Internal Medicine")
    m = parse(siu(f"SCH||A1|||||||||{START}", "RGS|1||1^INTERNAL MEDICINE"))
    assert (m.department, m.department_name) == ("1", "INTERNAL MEDICINE")


def test_department_subcomponent_form_takes_subcomponent_1():
    m = parse(siu(f"SCH||A1|||||||||{START}", "RGS|1", "AIL|1||11&X-Ray Room&L"))
    assert m.department == "11"


def test_provider_falls_back_to_pv1_7_first_repetition():
    m = parse(siu(f"SCH||A1|||||||||{START}", "PV1|1|O|||||D100^WEST^DANA~D200^EAST^SAM"))
    assert m.provider_ehr_id == "D100"


def test_visit_type_from_ais3_then_sch8_and_never_the_sch7_free_text_reason():
    assert parse(siu(f"SCH||A1|||||VT7^Seven|VT8|||{START}", "RGS|1", "AIS|1||VT3^Three")).visit_type == "VT3"
    assert parse(siu(f"SCH||A1|||||VT7^Seven|VT8|||{START}")).visit_type == "VT8"
    assert parse(siu(f"SCH||A1|||||VT7^Seven||||{START}")).visit_type is None


@pytest.mark.parametrize(
    ("pid15", "language", "note"),
    [
        ("ENG", "en", None), ("SPA^Spanish^HL70296", "es", None), ("EN", "en", None), ("", None, None),
        # BCP-47 tags (any case, - or _), language names, the code or name in another CWE component
        ("es-US", "es", None), ("ES-MX", "es", None), ("es_419", "es", None), ("zh-Hant-TW", "zh", None),
        ("Spanish", "es", None), ("SPANISH", "es", None), ("Español", "es", None), ("ESPANOL", "es", None),
        ("^Spanish", "es", None), ("^^^^Spanish", "es", None), ("^^^spa", "es", None), ("10^Spanish^LOCAL", "es", None),
        ("Spanish (Mexico)", "es", None), ("Haitian Creole", "ht", None), ("vie^Vietnamese", "vi", None),
        # not a language: the default applies, and the note names the components without repeating free text
        ("KLI", None, "PID-15 not understood: component 1 'KLI'"),
        ("99^Unknown Tongue", None, "PID-15 not understood: component 1 '99', component 2 a text of 14 characters"),
        ("und", None, "PID-15 not understood: component 1 'und'"),
    ],
)
def test_language_is_read_from_any_pid15_component(pid15, language, note):
    raw = siu(f"SCH||A1|||||||||{START}", seg("PID", {1: "1", 3: "MRN1", 5: "DOE^JANE", 15: pid15}))
    message = parse(raw)
    assert (message.language, message.language_note) == (language, note)


# --- escapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("A\\F\\B", "A|B"),
        ("A\\S\\B", "A^B"),
        ("A\\T\\E", "A&E"),
        ("A\\R\\B", "A~B"),
        ("A\\E\\B", "A\\B"),
        ("\\X41424344\\", "ABCD"),
        ("\\XC3A9\\t\\XC3A9\\", "été"),
        ("L1\\.br\\L2", "L1\nL2"),
        ("\\H\\BOLD\\N\\", "BOLD"),
    ],
)
def test_escape_sequences_are_decoded(escaped, plain):
    m = parse(siu(f"SCH||{escaped}|||||||||{START}"))
    assert m.appointment_id == plain


def test_hex_escape_uses_the_message_charset():
    raw = siu(f"SCH||\\XE9\\|||||||||{START}", msh18="8859/1")
    assert parse(raw).appointment_id == "é"


# --- privacy ------------------------------------------------------------------------------------


def test_siu_message_holds_no_patient_name_or_birth_date():
    m = parse(load_sample("04"))
    values = repr(dataclasses.astuple(m))
    assert "BROWN" not in values and "PETER" not in values and "19800523" not in values


def test_siu_message_is_frozen():
    m = parse(siu(f"SCH||A1|||||||||{START}"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.appointment_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(("fields", "location"), [
    ({2: "X1~Y1", 11: START}, "SCH^1^2"),
    ({2: "X1^EPIC~Y1^EPIC", 11: START}, "SCH^1^2"),
    ({1: "P1~P2", 2: "F1", 11: START}, "SCH^1^1"),   # a field that did not give the ID names two visits too
    ({1: "P1~P2", 11: START}, "SCH^1^1"),
])
def test_an_appointment_id_field_with_several_ids_is_refused_at_that_field(fields, location):
    e = rejected(siu(seg("SCH", fields), seg("PV1", {2: "O", 19: "V1"})))
    assert (e.ack_code, e.err_code, e.location) == ("AR", "102", location)
    assert "holds 2 appointment IDs" in e.reason


def test_a_visit_number_with_several_ids_is_refused_only_where_it_is_read():
    raw = siu(seg("SCH", {2: "F1", 11: START}), seg("PV1", {2: "O", 19: "V1~V2"}))
    assert rejected(raw).location == "PV1^1^19"
    assert parse(raw, appointment_id_order=("SCH-2", "SCH-1")).appointment_id == "F1"


@pytest.mark.parametrize("value", ["X1~", "X1~X1", "~X1", "X1~\"\""])
def test_empty_or_repeated_repetitions_name_one_appointment(value):
    assert parse(siu(seg("SCH", {2: value, 11: START}))).appointment_id == "X1"
