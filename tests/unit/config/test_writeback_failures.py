"""The portal's write-back failure rules without services: the replay body, reasons for people, the settings
check on its form fields, and a replay's result read back from its audit entry."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from lib.config.audit import AuditEntry
from lib.config.environments import writeback_problems
from lib.config.forms import form_fields
from lib.config.writeback_failures import REPLAY_ACTION, ReplayBody, ReplayResult, reason_text
from lib.models import EnvironmentConfig

ENV = EnvironmentConfig(id="contoso-tst", kind="test", display_name="Contoso", fhir_base_urls=(), approved=False,
                        epic_client_id="vv")


@pytest.mark.parametrize("body", [{}, {"all": True, "eventId": "e1", "appointmentKey": "k"}, {"eventId": "e1"},
                                  {"appointmentKey": "contoso-tst|1"}, {"all": False}, {"all": True, "extra": 1}])
def test_a_replay_body_names_all_or_exactly_one_event(body):
    with pytest.raises(ValidationError):
        ReplayBody.model_validate(body)


def test_a_replay_body_for_one_event_or_all_is_accepted():
    assert ReplayBody.model_validate({"all": True}).all is True
    one = ReplayBody.model_validate({"eventId": "e1", "appointmentKey": "contoso-tst|1", "checkedInEpic": True})
    assert (one.eventId, one.appointmentKey, one.checkedInEpic, one.all) == ("e1", "contoso-tst|1", True, False)


@pytest.mark.parametrize(("code", "text"), [
    ("epic_http_400", "Epic refused it"),
    ("epic_success_false", "Epic refused it"),
    ("retry_horizon_exceeded:epic_http_503", "Epic kept failing (time-outs, busy or down) until the retry horizon "
                                             "passed"),
    ("outcome_unknown_worker_died", "a worker stopped while calling Epic: the status may or may not be in Epic"),
    ("poisoned", "the queue gave up on it after repeated errors"),
    (None, "the queue gave up on it; its event has not been marked yet"),
])
def test_each_reason_code_reads_as_a_sentence(code, text):
    assert reason_text(code) == text


def test_write_back_settings_problems_land_on_their_form_fields():
    assert writeback_problems(ENV) == []
    broken = dataclasses.replace(ENV, writeback_status_codes={"joined": "1", "connected": "one and only"},
                                 writeback_retry_horizon_minutes=1)
    assert [(p.field, p.message) for p in writeback_problems(broken)] == [
        ("writeback_status_codes", "Write-back status codes: unknown event type 'joined' (use connected, "
                                   "disconnected, device_test_passed, device_test_failed)."),
        ("writeback_status_codes", "Write-back status code for 'connected' must be 1-16 letters or digits."),
        ("writeback_retry_horizon_minutes", "Write-back retry horizon must be a whole number of minutes from 5 "
                                            "to 10080."),
    ]


def test_the_write_back_settings_are_labelled_fields_of_the_main_form():
    fields = {f.name: f for f in form_fields(ENV.to_doc(), creating=False)}
    codes, horizon = fields["writeback_status_codes"], fields["writeback_retry_horizon_minutes"]
    assert (codes.label, codes.widget, codes.more) == ("Write-back status codes", "pairs", False)
    assert (horizon.label, horizon.widget, horizon.value) == ("Write-back retry horizon (minutes)", "number", "1440")


def test_a_replay_result_is_read_back_from_its_audit_entry():
    at = datetime(2026, 12, 6, 11, 0, tzinfo=UTC)
    entry = AuditEntry(id="a1", environment_id="contoso-tst", at=at, actor_id="local:ops", actor_name="ops",
                       action=REPLAY_ACTION, summary="",
                       before={"events": [{"eventId": "e1", "appointmentId": "123", "event": "connected",
                                           "role": "provider", "state": "failed"}]},
                       after={"outcomes": {"e1": "requeued", "e2": "check-epic-first"}})
    result = ReplayResult.from_audit(entry)
    assert (result.audit_id, result.actor, result.at) == ("a1", "ops", at)
    assert result.lines() == [
        {"eventId": "e1", "appointmentId": "123", "event": "connected", "role": "provider", "state": "failed",
         "outcome": "requeued"},
        {"eventId": "e2", "outcome": "check-epic-first"},
    ]
