"""Operator commands (``local.ops`` over ``lib.operations``) against Azurite and the Cosmos-compatible server."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from lib.models import appointment_key
from lib.operations import poison, rejected, timeline
from lib.operations.queues import peek, queue_client, send
from lib.store.visit_events import VisitEvent
from local import ops
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
PHONE = "(201)555-0123"


@pytest.fixture
def env(app, clock, environment_id):
    clock.set(NOW)
    return make_environment(app, environment_id)


def run_ops(app, capsys, *argv: str) -> tuple[int, object]:
    code = ops.run(list(argv), services=app)
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_rejected_message_is_listed_without_its_body_then_replayed_after_the_fix(app, env, capsys):
    csn = "8100001"
    response = post_hl7(env.id, siu("S12", csn=csn, start=START, control_id="R1", sent=NOW, processing_id="P",
                                    phone=PHONE))
    assert msa(response)[1] == "AR"

    code, listed = run_ops(app, capsys, "hl7", "rejected", "list", "--env", env.id)
    assert code == 0 and len(listed) == 1
    entry = listed[0]
    assert entry["controlId"] == "R1" and entry["sizeBytes"] > 0
    # The number's digits, not "555" alone: random IDs in the listing can contain "555".
    assert "raw" not in entry and "5550123" not in json.dumps(listed) and "PATIENT" not in json.dumps(listed)

    code, shown = run_ops(app, capsys, "hl7", "rejected", "show", "--env", env.id, "--id", entry["id"])
    assert code == 0 and shown["id"] == entry["id"]

    # Still wrong: the replay is answered AR again, says why, and the record stays.
    code = ops.run(["hl7", "rejected", "replay", "--env", env.id, "--id", entry["id"]], services=app)
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code == 1 and result["ackCode"] == "AR" and result["accepted"] is False
    assert result["reason"] and result["reason"] in err and entry["reason"][:40] in result["reason"]
    assert err.startswith(f"ops: not replayed: the intake refused message {entry['id']} again (200 AR: ")
    assert rejected.show_rejected(app, env.id, entry["id"]) is not None

    make_environment(app, env.id, kind="production")  # the fix: production sends MSH-11 P
    app.repos.environments.forget(env.id)
    code, result = run_ops(app, capsys, "hl7", "rejected", "replay", "--env", env.id, "--id", entry["id"])
    assert code == 0 and result == {"status": 200, "ackCode": "AA", "accepted": True, "textsQueued": 1}
    assert rejected.show_rejected(app, env.id, entry["id"]) is None
    assert app.repos.appointments.get(appointment_key(env.id, csn)) is not None


def test_showing_a_rejected_id_that_does_not_exist_says_so_on_stderr(app, env, capsys):
    code = ops.run(["hl7", "rejected", "show", "--env", env.id, "--id", "nope"], services=app)
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith(f"ops: no rejected message nope in environment {env.id} (already replayed")


def _event(app, env_id: str, csn: str, writeback: str) -> VisitEvent:
    event = VisitEvent(
        id=f"ev-{uuid.uuid4().hex[:8]}", appointment_key=appointment_key(env_id, csn), environment_id=env_id,
        appointment_id=csn, type="connected", role="patient", participant_id="patient", at_utc=NOW,
        correlation_id="corr-ops-1", writeback=writeback,
    )
    stored, _ = app.repos.visit_events.create_once(event)
    return stored


def test_poison_writebacks_are_listed_from_queue_and_events_and_replayed(app, env, capsys):
    # A peek sees 32 messages at most: start from an empty work queue so ours is among them.
    _empty_work_queue(app)
    failed = _event(app, env.id, "8200001", "failed")
    app.repos.visit_events.update(failed, writeback_reason="poisoned")
    queued = _event(app, env.id, "8200002", "pending")
    poison_client = queue_client(app.settings, poison.POISON_QUEUE)
    send(poison_client, {"id": queued.id, "appointmentKey": queued.appointment_key, "correlationId": "corr-q"})

    code, listed = run_ops(app, capsys, "writeback", "poison", "list", "--env", env.id)
    assert code == 0
    by_event = {item["eventId"]: item for item in listed}
    assert by_event[failed.id]["source"] == "event" and by_event[failed.id]["reason"] == "poisoned"
    assert by_event[queued.id]["source"] == "queue" and by_event[queued.id]["correlationId"] == "corr-q"

    code, outcomes = run_ops(app, capsys, "writeback", "poison", "replay", "--all", "--env", env.id)
    assert code == 0 and outcomes == {failed.id: "requeued", queued.id: "requeued"}
    assert app.repos.visit_events.get(failed.appointment_key, failed.id).writeback == "pending"
    remaining = [m.body for m in peek(poison_client) if m.body and m.body.get("id") == queued.id]
    assert remaining == []
    work = [m.body for m in peek(queue_client(app.settings, "visit-events"))]
    assert any(b and b.get("id") == failed.id for b in work) or _drained(app, failed)

    code, result = run_ops(app, capsys, "writeback", "poison", "replay", "--event", "nope",
                           "--appointment-key", failed.appointment_key)
    assert code == 1 and result["outcome"] == "missing"


def _empty_work_queue(app) -> None:
    """Start from an empty ``visit-events`` queue (created when this module runs first on fresh services)."""
    from azure.core.exceptions import ResourceExistsError

    client = queue_client(app.settings, "visit-events")
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    client.clear_messages()


def _drained(app, event: VisitEvent) -> bool:
    """The session's queue consumer (if any) may already have taken the message: then the event moved on."""
    return app.repos.visit_events.get(event.appointment_key, event.id).writeback != "pending"


def test_visit_timeline_by_appointment_and_by_correlation_has_no_phone_number(app, env, capsys, clock):
    csn = "8300001"
    assert msa(post_hl7(env.id, siu("S12", csn=csn, start=START, control_id="T1", sent=NOW, phone=PHONE)))[1] == "AA"
    _event(app, env.id, csn, "written")

    code, doc = run_ops(app, capsys, "visit", "timeline", "--env", env.id, "--appointment", csn)
    assert code == 0
    assert doc["appointment"]["id"] == appointment_key(env.id, csn)
    kinds = [e.get("kind") or e.get("type") for e in doc["entries"]]
    assert "connected" in kinds and any(k and k != "connected" for k in kinds)
    assert [e["at"] for e in doc["entries"]] == sorted(e["at"] for e in doc["entries"])
    text = json.dumps(doc)
    assert "5550123" not in text and "+1201" not in text and "phone_e164" not in text

    code, docs = run_ops(app, capsys, "visit", "timeline", "--env", env.id, "--correlation", "corr-ops-1")
    assert code == 0 and [d["appointmentKey"] for d in docs] == [appointment_key(env.id, csn)]
    assert timeline.find_by_correlation(app, env.id, "unknown-corr") == []


def test_ops_health_ready_reports_every_dependency(app, env, capsys):
    code, doc = run_ops(app, capsys, "health", "ready")
    assert code == 0 and doc["status"] == "ready"
    assert set(doc["checks"]) == {"configuration", "cosmos", "queues"}
    assert doc["checks"]["cosmos"]["environments"] >= 1




def test_replay_all_skips_every_write_back_that_may_already_be_in_epic_and_says_how_to_replay_it(
        app, env, capsys):
    _empty_work_queue(app)
    refused = _event(app, env.id, "8400001", "failed")  # Epic refused it: certain, replayed
    refused = app.repos.visit_events.update(refused, writeback_reason="epic_http_400")
    died = _event(app, env.id, "8400002", "unknown")  # a worker stopped mid-call
    timed_out = _event(app, env.id, "8400003", "failed")  # failed after a time-out that may have arrived
    timed_out = app.repos.visit_events.update(timed_out, writeback_reason="retry_horizon_exceeded",
                                              ambiguous_attempts=1)
    # Its message reached the poison queue, and meanwhile the event itself ended unknown: the event decides.
    queued_unknown = _event(app, env.id, "8400004", "unknown")
    poison_client = queue_client(app.settings, poison.POISON_QUEUE)
    send(poison_client, {"id": queued_unknown.id, "appointmentKey": queued_unknown.appointment_key})

    code = ops.run(["writeback", "poison", "replay", "--all", "--env", env.id], services=app)
    out, err = capsys.readouterr()
    assert code == 0
    unsure = (died, timed_out, queued_unknown)
    assert json.loads(out) == {refused.id: "requeued", **{e.id: poison.CHECK_EPIC_FIRST for e in unsure}}
    lines = err.splitlines()
    assert len(lines) == 3
    for event in unsure:
        line = next(x for x in lines if event.id in x)
        assert line.startswith(f"ops: skipped event {event.id} (appointment key {event.appointment_key}): "
                               "its write-back outcome is unknown")
        assert "Check the visit's connection status in Epic" in line
        assert line.endswith(f"./dev ops writeback poison replay --event {event.id} --appointment-key "
                             f"'{event.appointment_key}'")
        stored = app.repos.visit_events.get(event.appointment_key, event.id)
        assert (stored.writeback, stored.etag) == (event.writeback, event.etag)  # untouched
    work = [m.body.get("id") for m in peek(queue_client(app.settings, "visit-events")) if m.body]
    assert not set(work) & {e.id for e in unsure}

    # After checking Epic, the operator replays one on its own, as the line says.
    code, result = run_ops(app, capsys, "writeback", "poison", "replay", "--event", died.id,
                           "--appointment-key", died.appointment_key)
    assert code == 0 and result == {"eventId": died.id, "outcome": "requeued"}
    assert app.repos.visit_events.get(died.appointment_key, died.id).writeback in ("pending", "sending", "written",
                                                                                    "failed")


@pytest.mark.parametrize(("control", "hashed"), [
    ("SMITHJ-X", True),  # not a counter or a UUID
    ("2015550123", True),  # counters the log redaction would take for phone numbers: [phone] for each of them
    ("12345678901", True),
    ("7001234567-1", True),
    ("201-555-0123", True),
    ("7001234-1", False),  # a counter the redaction leaves whole: as it is
])
def test_ops_log_id_prints_exactly_what_the_intake_logged_for_a_control_id(app, env, capsys, caplog, monkeypatch,
                                                                           control, hashed):
    import io
    import logging

    from lib.observability.redaction import redact

    with caplog.at_level(logging.INFO, logger="lib.scheduling.intake"):
        response = post_hl7(env.id, siu("S12", csn="8600001", start=START, control_id=control, sent=NOW,
                                        processing_id="P"))  # a test environment refuses production messages
    assert msa(response)[1] == "AR"
    logged = " ".join(redact(r.getMessage()) for r in caplog.records if r.getMessage().startswith("hl7 rejected"))
    monkeypatch.setattr("sys.stdin", io.StringIO(control + "\n"))
    assert ops.run(["hl7", "log-id"], services=app) == 0
    printed = capsys.readouterr().out.strip()
    assert f"msh10={printed} " in logged and "[phone]" not in logged
    if hashed:
        assert printed.startswith("#") and len(printed) == 13 and control not in logged
    else:
        assert printed == control


# ---- what a wrong argument answers (exit 1 and a stderr line saying what to do; 2 for a usage error) ----------
def run_wrong(app, capsys, *argv: str) -> tuple[int, str, str]:
    code = ops.run(list(argv), services=app)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [
    ["writeback", "poison", "list", "--env", "{typo}"],
    ["writeback", "poison", "replay", "--all", "--env", "{typo}"],
    ["sms", "review", "list", "--env", "{typo}"],
    ["visit", "timeline", "--env", "{typo}", "--appointment", "8300001"],
    ["visit", "timeline", "--env", "{typo}", "--correlation", "corr-1"],
    ["queue", "poison", "list", "--env", "{typo}"],
    ["queue", "poison", "replay", "--queue", "launch-followup", "--all", "--env", "{typo}"],
    ["hl7", "rejected", "list", "--env", "{typo}"],
    ["hl7", "rejected", "show", "--env", "{typo}", "--id", "r1"],
    ["hl7", "rejected", "replay", "--env", "{typo}", "--id", "r1"],
])
def test_an_unknown_environment_is_named_not_answered_with_an_empty_list(app, env, capsys, argv):
    typo = env.id[:-1] + ("x" if env.id[-1] != "x" else "y")  # one letter off
    code, out, err = run_wrong(app, capsys, *[a.format(typo=typo) for a in argv])
    assert (code, out) == (1, "")
    assert err.startswith(f"ops: no environment {typo} is configured (")
    assert f"did you mean {env.id}" in err  # the closest first (others may follow: the store keeps many)


def test_an_unknown_visit_or_correlation_id_says_so(app, env, capsys):
    code, out, err = run_wrong(app, capsys, "visit", "timeline", "--env", env.id, "--appointment", "999999")
    assert (code, out) == (1, "")
    assert err.startswith(f"ops: no visit with appointment ID 999999 in environment {env.id} (")
    code, out, err = run_wrong(app, capsys, "visit", "timeline", "--env", env.id, "--correlation", "nope")
    assert (code, out) == (1, "")
    assert err.startswith(f"ops: no visit event in environment {env.id} carries correlation ID nope (")


@pytest.mark.parametrize("limit", ["-1", "0", "1001", "ten", "1e3"])
@pytest.mark.parametrize("command", [["hl7", "rejected", "list", "--env", "e1"], ["queue", "poison", "list"]])
def test_a_limit_out_of_range_is_a_usage_error_naming_the_range(app, capsys, command, limit):
    with pytest.raises(SystemExit) as usage:
        ops.run([*command, "--limit", limit], services=app)
    err = capsys.readouterr().err
    assert usage.value.code == 2 and "argument --limit:" in err and "1 to 1000" in err


def test_a_missing_text_or_event_says_what_to_do_on_stderr(app, env, capsys):
    code, out, err = run_wrong(app, capsys, "sms", "review", "resolve", "--text", "bogus", "--as", "sent")
    assert code == 1 and json.loads(out) == {"textId": "bogus", "outcome": "missing"}
    assert err.startswith("ops: no text bogus (") and "./dev ops sms review list" in err
    key = appointment_key(env.id, "8700001")
    code, out, err = run_wrong(app, capsys, "writeback", "poison", "replay", "--event", "nope",
                               "--appointment-key", key)
    assert code == 1 and json.loads(out)["outcome"] == "missing"
    assert err.startswith(f"ops: no visit event nope in visit {key} (") and "writeback poison list" in err


def test_a_text_that_is_not_unknown_is_not_resolved_and_the_command_says_why(app, env, capsys):
    csn = "8700002"
    assert msa(post_hl7(env.id, siu("S12", csn=csn, start=START, control_id="U1", sent=NOW, phone=PHONE)))[1] == "AA"
    [text] = [i for i in app.repos.outbox.for_appointment(appointment_key(env.id, csn)) if i.state == "pending"][:1]
    code, out, err = run_wrong(app, capsys, "sms", "review", "resolve", "--text", text.id, "--as", "resend")
    assert code == 1 and json.loads(out)["outcome"] == "not-unknown:pending"
    assert err.startswith(f"ops: text {text.id} is pending, not unknown: ")
