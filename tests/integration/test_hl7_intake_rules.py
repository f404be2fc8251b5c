"""Intake behaviour on bad, duplicate and out-of-order input (issue: foundation, "Bad input")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lib.models import appointment_key
from lib.store.contacts import phone_id
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7, segment
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def message(event: str = "S12", control: str = "C1", sent: datetime = NOW, **kw) -> bytes:
    return siu(event, csn=kw.pop("csn", "8000001"), start=kw.pop("start", START), control_id=control, sent=sent, **kw)


@pytest.fixture
def env(app, clock, environment_id):
    clock.set(NOW)
    return make_environment(app, environment_id)


def problem(response) -> dict:
    assert response.mimetype == "application/problem+json"
    return json.loads(response.get_body())


def test_body_that_is_not_hl7_gets_a_400_problem_and_is_kept_for_replay(app, env):
    response = post_hl7(env.id, b'{"hello": "world"}')
    assert response.status_code == 400
    doc = problem(response)
    assert doc["title"] == "Not an HL7 v2 message"
    kept = app.repos.rejected.get(env.id, doc["rejectedMessageId"])
    assert kept.raw == b'{"hello": "world"}'


def test_message_without_msh_gets_a_400_problem(app, env):
    body = b"PID|1||123\rSCH||5\r"
    response = post_hl7(env.id, body)
    assert response.status_code == 400
    assert "MSH" in problem(response)["detail"]


def test_unknown_environment_gets_a_404_problem_and_the_message_is_kept(app, clock):
    clock.set(NOW)
    response = post_hl7("no-such-env", message())
    assert response.status_code == 404
    doc = problem(response)
    assert "no-such-env" in doc["detail"]
    assert app.repos.rejected.get("no-such-env", doc["rejectedMessageId"]).raw == message()


def test_unsupported_siu_event_gets_ar_with_reason(app, env):
    response = post_hl7(env.id, message(event="S16"))
    assert msa(response)[1] == "AR"
    assert msa(response)[2] == "C1"
    assert "201" in "|".join(segment(response, "ERR"))
    assert app.repos.appointments.get(appointment_key(env.id, "8000001")) is None


def test_production_feed_into_a_test_environment_is_refused_with_202(app, env):
    response = post_hl7(env.id, message(processing_id="P"))
    assert msa(response)[1] == "AR"
    assert "202" in "|".join(segment(response, "ERR"))


def test_body_over_the_size_cap_gets_413_before_parsing(app, env):
    response = post_hl7(env.id, b"MSH|" + b"x" * (app.settings.hl7_max_bytes + 1))
    assert response.status_code == 413


def test_duplicate_msh10_gets_the_same_ack_and_is_applied_once(app, env):
    first = post_hl7(env.id, message())
    second = post_hl7(env.id, message())
    assert second.get_body() == first.get_body()
    outbox = app.repos.outbox.for_appointment(appointment_key(env.id, "8000001"))
    assert sorted(item.kind for item in outbox) == ["booked", "reminder", "reminder"]


def test_ack_echoes_msh10_and_copies_processing_id_and_version(app, env):
    response = post_hl7(env.id, message(control="XYZ-42"))
    fields = msa(response)
    assert fields[:3] == ["MSA", "AA", "XYZ-42"]
    msh = segment(response, "MSH")
    assert msh[8] == "ACK^S12^ACK"
    assert (msh[10], msh[11]) == ("T", "2.3")


def test_late_older_s12_does_not_undo_a_cancel(app, env, clock):
    clock.set(NOW + timedelta(minutes=10))
    post_hl7(env.id, message(control="C1", sent=NOW))
    post_hl7(env.id, message(event="S15", control="C3", sent=NOW + timedelta(minutes=10)))
    late = post_hl7(env.id, message(event="S12", control="C2", sent=NOW + timedelta(minutes=5)))
    assert msa(late)[1] == "AA"
    stored = app.repos.appointments.get(appointment_key(env.id, "8000001"))
    assert stored.status == "cancelled"


def test_reschedule_moves_the_appointment_and_skips_old_reminders(app, env):
    post_hl7(env.id, message(control="C1"))
    later = START + timedelta(days=1)
    post_hl7(env.id, message(event="S13", control="C2", sent=NOW + timedelta(minutes=1), start=later))  # within 5 min
    key = appointment_key(env.id, "8000001")
    stored = app.repos.appointments.get(key)
    assert (stored.start_utc, stored.schedule_revision) == (later, 2)
    states = {item.id.split("|", 2)[2]: item.state for item in app.repos.outbox.for_appointment(key)}
    assert states["reminder-1440|1"] == "skipped"
    assert states["reminder-60|1"] == "skipped"
    assert states["reminder-1440|2"] == "pending"
    assert states["changed|2"] == "pending"


def test_phone_is_stored_apart_in_e164_with_a_ttl_until_after_the_visit(app, env):
    post_hl7(env.id, message(phone="(201) 555-0142"))
    key = appointment_key(env.id, "8000001")
    doc = app.store.container("visits").read_item(item=phone_id(key), partition_key=key)
    assert doc["phone_e164"] == "+12015550142"
    delete_after = datetime.fromisoformat(doc["delete_after"])
    assert delete_after == START + timedelta(minutes=30) + timedelta(hours=2)
    assert doc["ttl"] == int((delete_after - NOW).total_seconds())
    appointment_doc = app.store.container("visits").read_item(item=key, partition_key=key)
    assert "5550142" not in json.dumps(appointment_doc)


def test_first_siu_for_a_visit_already_opened_by_a_launch_plans_the_usual_texts(app, env):
    from lib.models import Appointment

    # A clinician launched before Epic's SIU arrived: the launch stored a minimal record.
    app.repos.appointments.create(Appointment(
        environment_id=env.id, appointment_id="8000001", status="booked", start_utc=START,
        end_utc=START + timedelta(minutes=30), duration_minutes=30, source_time_zone=None, link_id="L" * 22,
    ))
    assert msa(post_hl7(env.id, message()))[1] == "AA"
    outbox = app.repos.outbox.for_appointment(appointment_key(env.id, "8000001"))
    assert sorted(item.id.split("|", 2)[2] for item in outbox) == [
        "booked|1", "reminder-1440|1", "reminder-60|1",
    ]


def test_a_rejected_message_is_purged_with_its_visit_not_kept_for_the_whole_ttl(app, env, clock):
    from azure.functions.timer import TimerRequest

    from functions.reminders import reminders_due

    response = post_hl7(env.id, message(processing_id="P"))  # refused: a production feed into a test env
    assert msa(response)[1] == "AR"
    [kept] = app.repos.rejected.list(env.id)
    visit_over = START + timedelta(minutes=30) + timedelta(minutes=env.sms.phone_grace_minutes)
    clock.set(visit_over - timedelta(minutes=1))
    reminders_due.build().get_user_function()(TimerRequest(past_due=False))
    assert app.repos.rejected.get(env.id, kept.id) is not None  # the operator can still replay it
    clock.set(visit_over + timedelta(minutes=1))
    reminders_due.build().get_user_function()(TimerRequest(past_due=False))
    assert app.repos.rejected.get(env.id, kept.id) is None


@pytest.mark.parametrize("bad_id", ["\x00\r\nX-Injected: 1", "a" * 65, "../env", "-leading-dash", ""])
def test_malformed_environment_id_is_refused_and_nothing_is_kept(app, clock, bad_id):
    clock.set(NOW)
    response = post_hl7(bad_id, message())
    assert response.status_code == 400
    doc = problem(response)
    assert doc["title"] == "Invalid environment ID" and "rejectedMessageId" not in doc
    assert bad_id not in doc["detail"] or bad_id == ""


def test_unknown_environment_keeps_only_a_message_sized_body(app, clock):
    clock.set(NOW)
    big = message() + b"NTE|1||" + b"x" * 70_000 + b"\r"
    doc = problem(post_hl7("no-such-env-2", big))
    assert "rejectedMessageId" not in doc
    assert "rejectedMessageId" in problem(post_hl7("no-such-env-2", message()))


@pytest.mark.parametrize("order", [("SCH2",), (), ("<script>",)])
def test_a_stored_appointment_id_setting_the_portal_refuses_gets_ar_naming_it_not_a_503(app, clock, environment_id,
                                                                                      order):
    clock.set(NOW)
    env = make_environment(app, environment_id, appointment_id_order=order)  # as an older version could store
    response = post_hl7(env.id, message())
    assert response.status_code == 200
    assert msa(response)[1] == "AR"
    said = "|".join(segment(response, "MSA")) + "|".join(segment(response, "ERR"))
    assert "portal setting wrong: appointment_id_order" in said
    assert app.repos.appointments.get(appointment_key(env.id, "8000001")) is None


def test_start_in_year_2200_gets_ar_102_at_sch_11_and_schedules_nothing(app, env):
    response = post_hl7(env.id, message(control="FAR1", start=datetime(2200, 1, 6, 15, 0, tzinfo=UTC)))
    assert msa(response)[1] == "AR"
    assert "SCH-11.4 is more than 5 years ahead" in msa(response)[3]
    err = "|".join(segment(response, "ERR"))
    assert "102" in err and "SCH^1^11" in err
    assert app.repos.appointments.get(appointment_key(env.id, "8000001")) is None


def test_start_four_years_ahead_is_accepted(app, env):
    response = post_hl7(env.id, message(control="NEAR1", start=START + timedelta(days=4 * 365)))
    assert msa(response)[1] == "AA"
    assert app.repos.appointments.get(appointment_key(env.id, "8000001")).start_utc == START + timedelta(days=4 * 365)


def test_start_before_1970_gets_ar_102(app, env):
    response = post_hl7(env.id, message(control="OLD1", start=datetime(1969, 12, 31, 15, 0, tzinfo=UTC)))
    assert msa(response)[1] == "AR"
    assert "is before 1970" in msa(response)[3]
