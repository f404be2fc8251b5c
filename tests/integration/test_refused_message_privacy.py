"""A refused message's raw bytes (the patient's number inside) never outlive its visit, whatever refused it.

For each way the intake can refuse a message that still names its visit (docs/hl7-intake.md, "What is
refused"), the kept copy must be tied to the visit's key and deleted when the visit is cancelled, deleted, a
no-show or its number nulled; and it must go when the visit is over. A body that names no visit but holds a
phone-like PID-13/14 is kept at most three days (lib/scheduling/refused_keep.py).
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import appointment_key
from lib.scheduling.refused_keep import PHONE_KEEP
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # 10:00 in New York
PHONE_TEXT = b"(201)555-0147"
GRACE = timedelta(minutes=120)


def good(event: str, csn: str, control: str, minutes: int) -> bytes:
    return siu(event, csn=csn, start=START, control_id=control, sent=NOW + timedelta(minutes=minutes),
               phone=PHONE_TEXT.decode())


def first_segment_replaced(raw: bytes, name: bytes, new: bytes) -> bytes:
    return b"\r".join(new if seg.startswith(name + b"|") else seg for seg in raw.split(b"\r"))


def without(raw: bytes, *names: bytes) -> bytes:
    return b"\r".join(seg for seg in raw.split(b"\r") if seg[:3] not in names)


def _bad_start(raw: bytes) -> bytes:
    return without(raw, b"AIP").replace(b"|^^^2026", b"|^^^garbage2026", 1)


def _no_start(raw: bytes) -> bytes:
    return re.sub(rb"\|\^\^\^\d+\|", b"|^^^|", without(raw, b"AIP"), count=1)


def _with_msh18(raw: bytes, charset: bytes) -> bytes:
    return raw.replace(b"|T|2.3", b"|T|2.3||||||" + charset, 1)


# Each: (what refuses it, how the S12 is changed, the answer: HTTP status and MSA-1 or None for a problem)
REFUSALS: list[tuple[str, Callable[[bytes], bytes], tuple[int, str | None]]] = [
    ("start in SCH-11.4 not a time, no other start", _bad_start, (200, "AR")),
    ("no start at all", _no_start, (200, "AR")),
    ("unsupported SIU event S16", lambda b: b.replace(b"SIU^S12|", b"SIU^S16|"), (200, "AR")),
    ("not a scheduling message (ADT)", lambda b: b.replace(b"SIU^S12|", b"ADT^A04|"), (200, "AR")),
    ("TAB inside PID-11", lambda b: b.replace(b"1 MAIN ST", b"1\tMAIN ST"), (200, "AR")),
    ("NUL inside SCH-25", lambda b: b.replace(b"|1^SCH", b"|1\x00^SCH"), (200, "AR")),
    ("unsupported version 2.2", lambda b: b.replace(b"|T|2.3", b"|T|2.2", 1), (200, "AR")),
    ("MSH-12 missing", lambda b: b.replace(b"|T|2.3", b"|T|", 1), (200, "AR")),
    ("bytes invalid in the declared UTF-8", lambda b: _with_msh18(b, b"UNICODE UTF-8")
     .replace(b"ANYTOWN", b"ANYT\xffWN"), (200, "AR")),
    ("unsupported character set", lambda b: _with_msh18(b, b"EBCDIC"), (200, "AR")),
    ("unusable MSH-2", lambda b: b.replace(b"MSH|^~\\&|", b"MSH|^^\\&|", 1), (200, "AR")),
    ("mixed line endings", lambda b: b.replace(b"\rPID|", b"\nPID|", 1), (200, "AR")),
    ("two messages in one body", lambda b: b + b, (200, "AR")),
    ("batch header before MSH", lambda b: b"BHS|^~\\&|SCHED\r" + b, (200, "AR")),
    ("PID-3 over the repetition limit", lambda b: b.replace(b"|Z999001|", b"|" + b"~".join([b"X"] * 101) + b"|"),
     (200, "AR")),
    ("PID-11 over the field size limit", lambda b: b.replace(b"1 MAIN ST", b"A" * (32 * 1024 + 1)), (200, "AR")),
    ("MSH-11 P to a test environment", lambda b: b.replace(b"|T|2.3", b"|P|2.3", 1), (200, "AR")),
    ("MLLP start block without end block", lambda b: b"\x0b" + b, (400, None)),
    ("data after the MLLP end block", lambda b: b"\x0b" + b + b"\x1c\r" + b"trailing", (400, None)),
    ("an ACK sent to the intake", lambda b: b.replace(b"SIU^S12|", b"ACK^S12|"), (400, None)),
]


@pytest.fixture
def env(app, clock, environment_id):
    clock.set(NOW)
    return make_environment(app, environment_id)


def kept_docs(app, env_id: str) -> list[dict]:
    return list(app.store.container("rejected").query_items(
        "SELECT * FROM c WHERE c.environmentId = @e", parameters=[{"name": "@e", "value": env_id}],
        partition_key=env_id))


def holding_the_number(app, env_id: str) -> list[dict]:
    return [d for d in kept_docs(app, env_id) if PHONE_TEXT in base64.b64decode(d["raw"])]


@pytest.mark.parametrize(("label", "mutate", "answer"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_refused_message_naming_its_visit_is_deleted_with_the_cancel(app, env, label, mutate, answer):
    csn = f"77{zlib.crc32(label.encode()) % 100000:05d}"
    refused = post_hl7(env.id, mutate(good("S12", csn, "R1", 0)))
    status, code = answer
    assert refused.status_code == status
    if code is not None:
        assert msa(refused)[1] == code
    [kept] = holding_the_number(app, env.id)
    key = appointment_key(env.id, csn)
    assert kept["appointmentKey"] == key
    assert msa(post_hl7(env.id, good("S12", csn, "G1", 1)))[1] == "AA"
    assert msa(post_hl7(env.id, good("S15", csn, "G2", 2)))[1] == "AA"
    assert holding_the_number(app, env.id) == []


@pytest.mark.parametrize("ending", ["S17", "S26"])
def test_the_kept_copy_goes_with_a_delete_or_no_show_too(app, env, ending):
    csn = "7710001"
    post_hl7(env.id, good("S16", csn, "R1", 0))
    assert len(holding_the_number(app, env.id)) == 1
    post_hl7(env.id, good("S12", csn, "G1", 1))
    assert msa(post_hl7(env.id, good(ending, csn, "G2", 2)))[1] == "AA"
    assert holding_the_number(app, env.id) == []


def test_the_kept_copy_goes_when_the_sender_nulls_the_number(app, env):
    csn = "7710002"
    post_hl7(env.id, _bad_start(good("S12", csn, "R1", 0)))
    post_hl7(env.id, good("S12", csn, "G1", 1))
    nulled = siu("S14", csn=csn, start=START, control_id="G2", sent=NOW + timedelta(minutes=2), phone='""')
    assert msa(post_hl7(env.id, nulled))[1] == "AA"
    assert holding_the_number(app, env.id) == []


def test_a_kept_copy_with_a_readable_end_goes_when_the_visit_is_over(app, env):
    post_hl7(env.id, good("S16", "7710003", "R1", 0))
    [kept] = kept_docs(app, env.id)
    end = START + timedelta(minutes=30)
    assert datetime.fromisoformat(kept["delete_after"]) == end + GRACE
    assert kept["ttl"] == int((end + GRACE - NOW).total_seconds())


def test_a_message_whose_times_cannot_be_read_but_holds_a_number_is_kept_three_days(app, env):
    post_hl7(env.id, _bad_start(good("S12", "7710004", "R1", 0)))
    [kept] = kept_docs(app, env.id)
    assert kept["appointmentKey"] == appointment_key(env.id, "7710004")
    assert datetime.fromisoformat(kept["delete_after"]) == NOW + PHONE_KEEP
    assert kept["ttl"] == int(PHONE_KEEP.total_seconds())


def test_a_message_naming_no_visit_but_holding_a_number_is_kept_three_days(app, env):
    body = without(good("S12", "7710005", "R1", 0), b"SCH", b"PV1", b"AIP")
    response = post_hl7(env.id, body)
    assert msa(response)[1] == "AR"
    [kept] = kept_docs(app, env.id)
    assert kept["appointmentKey"] is None
    assert datetime.fromisoformat(kept["delete_after"]) == NOW + PHONE_KEEP


def test_a_message_naming_no_visit_and_no_number_keeps_the_configured_ttl(app, env):
    body = without(good("S12", "7710006", "R1", 0), b"SCH", b"PV1", b"PID", b"AIP")
    post_hl7(env.id, body)
    [kept] = kept_docs(app, env.id)
    assert (kept["appointmentKey"], kept["delete_after"]) == (None, None)
    assert kept["ttl"] == app.settings.hl7_rejected_ttl_days * 86400


def test_the_environments_appointment_id_order_decides_the_tie(app, clock, environment_id):
    clock.set(NOW)
    env = make_environment(app, environment_id, appointment_id_order=("PV1-19",))
    body = good("S16", "7710007", "R1", 0).replace(b"CLINICIAN^DEMO||||||||||||7710007",
                                                  b"CLINICIAN^DEMO||||||||||||V-42")
    post_hl7(env.id, body)
    [kept] = kept_docs(app, env.id)
    assert kept["appointmentKey"] == appointment_key(env.id, "V-42")


def test_a_body_for_an_environment_that_does_not_exist_is_tied_with_the_default_order(app, clock, environment_id):
    clock.set(NOW)
    response = post_hl7(environment_id, good("S12", "7710008", "R1", 0), sign=False)
    assert response.status_code == 404
    [kept] = kept_docs(app, environment_id)
    assert kept["appointmentKey"] == appointment_key(environment_id, "7710008")
    # No zone is known yet: the end is read as UTC and given 14 hours more (every zone is within UTC-12..+14).
    naive_end = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)
    assert datetime.fromisoformat(kept["delete_after"]) == naive_end + GRACE + timedelta(hours=14)


def test_ids_are_read_from_a_message_in_another_delimiter_set(app, env):
    body = good("S16", "7710009", "R1", 0).replace(b"|", b"#")  # MSH-1 '#'
    assert post_hl7(env.id, body).status_code == 200  # an AR in the message's own delimiters
    [kept] = kept_docs(app, env.id)
    assert kept["appointmentKey"] == appointment_key(env.id, "7710009")


def test_a_message_refused_after_its_visit_was_cancelled_goes_at_once(app, env):
    csn = "7710010"
    post_hl7(env.id, good("S12", csn, "G1", 0))
    assert msa(post_hl7(env.id, good("S15", csn, "G2", 1)))[1] == "AA"
    assert msa(post_hl7(env.id, good("S16", csn, "R1", 2)))[1] == "AR"
    [kept] = holding_the_number(app, env.id)
    assert datetime.fromisoformat(kept["delete_after"]) == NOW  # the purge timer's next run
    assert kept["ttl"] == 60  # Cosmos DB's own expiry, the shortest the store writes


def test_a_message_without_times_for_a_stored_visit_goes_when_the_stored_visit_is_over(app, env):
    csn = "7710011"
    post_hl7(env.id, good("S12", csn, "G1", 0))
    post_hl7(env.id, _bad_start(good("S14", csn, "R1", 1)))
    [kept] = holding_the_number(app, env.id)
    assert datetime.fromisoformat(kept["delete_after"]) == START + timedelta(minutes=30) + GRACE
