"""A visit number reused by another sender (MSH-4) or for another patient (PID-3) never takes the visit over.

Through the HTTP function on the real store: what the first patient and the analyst would check afterwards (the
visit's time and status, its stored number, its texts), the ACK (MSA, ERR) and the kept message. Rules:
docs/hl7-intake.md "Whose visit: sender and patient".
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import appointment_key
from lib.scheduling.replay import replay_rejected
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7, segment
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 2, 15, 0, 30, tzinfo=UTC)
START = datetime(2027, 3, 9, 19, 0, tzinfo=UTC)
FIRST_PHONE, SECOND_PHONE = "(312)555-0181", "(312)555-0182"


@pytest.fixture
def env(app, clock):
    clock.set(NOW)
    return make_environment(app, f"idn-{uuid.uuid4().hex[:8]}")


def message(event: str, csn: str, control_id: str, *, facility: str = "HOSP A", patient: str | None = "Z999001",
            phone: str = FIRST_PHONE, minutes: int = 0, start: datetime = START) -> bytes:
    """An SIU for ``csn`` from MSH-4 ``facility`` about PID-3 ``patient`` (``None``: PID-3 empty)."""
    raw = siu(event, csn=csn, start=start, control_id=control_id, sent=NOW - timedelta(minutes=30 - minutes),
              phone=phone).decode()
    raw = raw.replace("|DEMO HOSPITAL|", f"|{facility}|", 1).replace("|T|2.3\r", "|T|2.5.1\r", 1)
    return raw.replace("PID|1||Z999001|", f"PID|1||{patient or ''}|", 1).encode()


def accepted(env, raw: bytes) -> None:
    response = post_hl7(env.id, raw)
    assert msa(response)[1] == "AA", msa(response)


def visit(app, env, csn: str):
    key = appointment_key(env.id, csn)
    texts = {f"{i.id.split('|')[-2]}|{i.revision}": i.state for i in app.repos.outbox.for_appointment(key)}
    return app.repos.appointments.get(key), app.repos.contacts.phone(key, now=NOW), texts


def assert_first_patients_visit_untouched(app, env, csn: str) -> None:
    stored, phone, texts = visit(app, env, csn)
    assert (stored.status, stored.start_utc, stored.schedule_revision) == ("booked", START, 1)
    assert phone == "+13125550181"
    assert set(texts) == {"booked|1", "reminder-1440|1", "reminder-60|1"}
    assert texts["reminder-60|1"] == "pending"


@pytest.mark.parametrize(("event", "facility", "patient"), [
    ("S14", "CLINIC B", "Z777777"),  # another feed and another patient (the tester's case)
    ("S12", "CLINIC B", "Z777777"),  # the other feed books its own visit with the same number
    ("S15", "CLINIC B", "Z999001"),  # another feed's cancel, even naming the same identifier
    ("S13", "CLINIC B", None),       # another feed, no PID-3 to compare
    ("S14", "HOSP A^1.2.3^ISO", "Z777777"),  # the same feed, another patient
    ("S15", "HOSP A", "Z777777"),
])
def test_a_message_about_another_senders_or_patients_visit_is_refused_and_changes_nothing(
    app, env, event, facility, patient,
):
    csn = f"C{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", csn, "1001"))
    response = post_hl7(env.id, message(event, csn, "2001", facility=facility, patient=patient, phone=SECOND_PHONE,
                                        minutes=5, start=START + timedelta(hours=1)))
    assert msa(response)[1] == "AR"
    err = segment(response, "ERR")
    other_patient = facility.startswith("HOSP A")
    assert err[2] == ("PID^1^3" if other_patient else "SCH^1^2")
    assert err[3].split("^")[0] == "205"
    assert ("another patient" if other_patient else "another sending facility") in err[8]
    assert "Z777777" not in err[8] and "Z999001" not in err[8]
    assert_first_patients_visit_untouched(app, env, csn)
    kept = [r for r in app.repos.rejected.list(env.id) if r.control_id == "2001"]
    assert len(kept) == 1 and kept[0].err_code == "205"  # kept for the operator, like every refusal
    assert kept[0].appointment_key == appointment_key(env.id, csn)


def test_the_same_patient_resent_by_the_same_sender_is_applied(app, env):
    csn = f"S{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", csn, "1001"))
    moved = START + timedelta(hours=1)
    accepted(env, message("S14", csn, "1002", minutes=1, start=moved))
    # PID-3 with a second identifier first (an enterprise ID added): still the same patient.
    accepted(env, message("S14", csn, "1003", minutes=2, start=moved, patient="E55~Z999001"))
    accepted(env, message("S14", csn, "1004", minutes=3, start=moved, patient=None))  # nothing to compare
    accepted(env, message("S14", csn, "1005", minutes=4, start=moved, facility="hosp a^1.2.3^ISO"))
    stored, phone, texts = visit(app, env, csn)
    assert (stored.status, stored.start_utc) == ("booked", moved)
    assert phone == "+13125550181" and "changed|2" in texts
    accepted(env, message("S15", csn, "1006", minutes=5, patient="E55"))  # the identifier the last message added
    assert visit(app, env, csn)[0].status == "cancelled"


def test_only_keyed_hashes_of_pid3_are_stored(app, env):
    csn = f"H{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", csn, "1001", patient="MRN4417^^^HOSPA^MR~EPI8821^^^EPI^EPI"))
    key = appointment_key(env.id, csn)
    docs = list(app.store.container("visits").query_items(
        "SELECT * FROM c WHERE c.appointmentKey = @k", parameters=[{"name": "@k", "value": key}],
        partition_key=key))
    text = json.dumps(docs)
    assert "MRN4417" not in text and "EPI8821" not in text
    (appointment,) = [d for d in docs if d["type"] == "appointment"]
    assert appointment["sender"] == "HOSP A"
    assert len(appointment["patient_refs"]) == 2


def test_facilities_the_admin_bound_to_the_environment_are_one_feed(app, env):
    bound = dataclasses.replace(env, hl7_sending_facilities=("HOSP A", "HOSP A EAST"))
    app.repos.environments.put(bound)
    csn = f"B{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", csn, "1001"))
    other_patient = post_hl7(env.id, message("S14", csn, "2001", facility="HOSP A EAST", patient="Z777777",
                                             phone=SECOND_PHONE, minutes=1, start=START + timedelta(hours=1)))
    assert msa(other_patient)[1] == "AR"  # the patient check still applies within one feed
    assert_first_patients_visit_untouched(app, env, csn)
    accepted(env, message("S15", csn, "1002", facility="HOSP A EAST", minutes=2))
    assert visit(app, env, csn)[0].status == "cancelled"


def test_a_refused_message_replays_once_the_admin_binds_both_facilities(app, env):
    csn = f"R{uuid.uuid4().hex[:8]}"
    accepted(env, message("S12", csn, "1001"))
    refused = post_hl7(env.id, message("S15", csn, "2001", facility="HOSP A NEW ENGINE", minutes=1))
    assert msa(refused)[1] == "AR"
    (kept,) = [r for r in app.repos.rejected.list(env.id) if r.control_id == "2001"]
    app.repos.environments.put(dataclasses.replace(env, hl7_sending_facilities=("HOSP A", "HOSP A NEW ENGINE")))
    assert replay_rejected(env.id, kept.id, intake=app.intake, rejected=app.repos.rejected).ack_code == "AA"
    stored = visit(app, env, csn)[0]
    assert (stored.status, stored.sender) == ("cancelled", "HOSP A NEW ENGINE")
