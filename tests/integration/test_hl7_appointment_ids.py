"""Which visit a message names when its appointment ID fields (SCH-2, SCH-1, PV1-19) disagree or repeat.

Through the HTTP function on the real store; what the patient and the analyst would check: the visit's status,
its stored number, its pending texts, the ACK and the log. Rules: docs/hl7-intake.md "Appointment ID".
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import appointment_key
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7, segment
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 2, 15, 0, 30, tzinfo=UTC)
START = datetime(2027, 3, 9, 19, 0, tzinfo=UTC)


@pytest.fixture
def env(app, clock):
    clock.set(NOW)
    return make_environment(app, f"ids-{uuid.uuid4().hex[:8]}")


def message(event: str, control_id: str, *, placer: str = "", filler: str = "", visit_number: str = "",
            minutes: int = 0) -> bytes:
    """An SIU with SCH-1 ``placer``, SCH-2 ``filler`` and PV1-19 ``visit_number`` as written (``~`` repeats)."""
    raw = siu(event, csn="CSNPLACEHOLDER", start=START, control_id=control_id,
              sent=NOW - timedelta(minutes=30 - minutes), phone="(312)555-0199").decode()
    raw = raw.replace("|T|2.3\r", "|T|2.5.1\r", 1)
    raw = raw.replace("SCH||CSNPLACEHOLDER|", f"SCH|{placer}|{filler}|", 1)
    return raw.replace("||||CSNPLACEHOLDER\r", f"||||{visit_number}\r", 1).encode()


def accepted(env, raw: bytes) -> None:
    response = post_hl7(env.id, raw)
    assert msa(response)[1] == "AA", msa(response)


def state(app, env, appointment_id: str):
    key = appointment_key(env.id, appointment_id)
    stored = app.repos.appointments.get(key)
    pending = sorted(i.id.split("|")[-2] for i in app.repos.outbox.for_appointment(key) if i.state == "pending")
    return (stored.status if stored else None), app.repos.contacts.phone(key, now=NOW), pending


@pytest.mark.parametrize(("field", "location"), [("filler", "SCH^1^2"), ("placer", "SCH^1^1"),
                                                 ("visit_number", "PV1^1^19")])
def test_an_id_field_naming_two_visits_is_refused_and_nothing_is_booked(app, env, field, location):
    x, y = f"X{uuid.uuid4().hex[:6]}", f"Y{uuid.uuid4().hex[:6]}"
    ids = {"filler": "", "placer": "", "visit_number": ""} | {field: f"{x}~{y}"}
    response = post_hl7(env.id, message("S12", "1001", **ids))
    assert msa(response)[1] == "AR"
    err = segment(response, "ERR")
    assert (err[2], err[3].split("^")[0]) == (location, "102")
    assert "holds 2 appointment IDs" in err[8]
    assert state(app, env, x)[0] is None and state(app, env, y)[0] is None


def test_a_cancel_listing_the_ids_in_another_order_is_refused_too_and_the_visit_stays_as_booked(app, env):
    x, y = f"X{uuid.uuid4().hex[:6]}", f"Y{uuid.uuid4().hex[:6]}"
    accepted(env, message("S12", "1001", filler=x, visit_number=x))
    assert msa(post_hl7(env.id, message("S15", "1002", filler=f"{y}~{x}", visit_number=x, minutes=1)))[1] == "AR"
    assert state(app, env, x)[0] == "booked" and state(app, env, y)[0] is None


@pytest.mark.parametrize("cancel_ids", [
    {"placer": "P{csn}", "filler": "{csn}", "visit_number": "{csn}"},   # both IDs (the tester's case)
    {"placer": "P{csn}", "filler": "{csn}"},                          # no visit number
    {"placer": "P{csn}^EPIC", "filler": "{csn}^EPIC", "visit_number": ""},  # with namespace components
])
def test_a_visit_booked_by_its_placer_id_is_found_by_a_cancel_naming_its_other_ids(app, env, cancel_ids):
    csn = f"{uuid.uuid4().int % 10**8:08d}"
    accepted(env, message("S12", "1001", placer=f"P{csn}", visit_number=csn))
    assert state(app, env, f"P{csn}") == ("booked", "+13125550199", ["booked", "reminder-1440", "reminder-60"])
    accepted(env, message("S15", "1002", minutes=1, **{k: v.format(csn=csn) for k, v in cancel_ids.items()}))
    status, _, pending = state(app, env, f"P{csn}")
    assert status == "cancelled"
    assert not [kind for kind in pending if kind.startswith("reminder")]
    assert state(app, env, csn)[0] is None  # no second visit, no tombstone beside it


def test_a_change_and_a_cancel_naming_both_ids_find_the_visit_booked_by_its_placer_id(app, env):
    csn = f"{uuid.uuid4().int % 10**8:08d}"
    accepted(env, message("S12", "1001", placer=f"P{csn}"))
    accepted(env, message("S14", "1002", placer=f"P{csn}", filler=csn, minutes=1))
    stored = app.repos.appointments.get(appointment_key(env.id, f"P{csn}"))
    assert stored.other_ids == {"SCH-1": f"P{csn}", "SCH-2": csn}  # the IDs it is known by
    accepted(env, message("S15", "1003", placer=f"P{csn}", filler=csn, minutes=2))
    assert state(app, env, f"P{csn}")[0] == "cancelled" and state(app, env, csn)[0] is None


def test_a_cancel_whose_other_id_names_a_visit_with_different_ids_is_a_tombstone_and_a_warning(app, env, caplog):
    csn = f"{uuid.uuid4().int % 10**8:08d}"
    accepted(env, message("S12", "1001", placer=f"P{csn}", visit_number=f"V{csn}"))
    with caplog.at_level(logging.INFO, logger="lib.scheduling.intake"):
        accepted(env, message("S15", "1002", placer=f"P{csn}", filler=csn, visit_number=f"W{csn}", minutes=1))
    assert state(app, env, f"P{csn}")[0] == "booked"  # another visit number: not the same appointment
    assert state(app, env, csn)[0] == "cancelled"
    lines = [r for r in caplog.records if "names no stored visit" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    message_text = lines[0].getMessage()
    assert "SCH-1" in message_text and "PV1-19" in message_text and csn not in message_text
