"""Stored settings the portal now refuses, written straight into the store: every reader (launch, join API, HL7
intake, texts, write-back) stops with an error naming the setting, not a misleading one later
(lib/stored_settings.py). Real Cosmos-compatible server, Azurite and the ACS stand-in; triggers called in-process.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from lib.models import appointment_key
from lib.operations import rejected
from lib.store.visit_events import VisitEvent
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7, segment
from tests.support.environments import make_environment
from tests.support.join_links import visit_with_join_link
from tests.support.standins import AcsStandin

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)


def corrupt(app: Any, environment_id: str, **fields: Any) -> None:
    """Write ``fields`` into the stored environment document as a direct store edit would (no portal rule ran),
    and drop this process's cached copy (another instance would see it within the cache's age)."""
    container = app.store.container("environments")
    doc = container.read_item(item=environment_id, partition_key=environment_id)
    for name, value in fields.items():
        if name.startswith("sms__"):
            doc["sms"] = {**doc["sms"], name[5:]: value}
        else:
            doc[name] = value
    container.upsert_item({k: v for k, v in doc.items() if not k.startswith("_")})
    app.repos.environments.forget(environment_id)


@pytest.fixture
def env(app, clock, environment_id):
    clock.set(NOW)
    url = f"https://127.0.0.1:9/{environment_id}/api/FHIR/R4"  # never contacted: refused before discovery
    yield make_environment(app, environment_id, fhir_base_urls=(url,))
    # Removed afterwards: a broken environment left in the session's store would be listed by other tests.
    app.store.container("environments").delete_item(item=environment_id, partition_key=environment_id)
    app.repos.environments.forget(environment_id)


def book(env: Any, control: str, csn: str = "8500001") -> func.HttpResponse:
    return post_hl7(env.id, siu("S12", csn=csn, start=START, control_id=control, sent=NOW, phone="(201)555-0123"))


# ---- HL7 intake -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "setting"), [
    ({"client_assertion_alg": "HS256"}, "client_assertion_alg"),
    ({"time_zone": "Mars/Base"}, "time_zone"),
    ({"launch_mode": "magic"}, "launch_mode"),
    ({"sms__reminder_offsets_minutes": [0]}, "sms.reminder_offsets_minutes"),
])
def test_the_intake_answers_ar_naming_the_setting_and_keeps_the_message_for_replay(app, env, fields, setting):
    corrupt(app, env.id, **fields)
    response = book(env, "U1")
    assert response.status_code == 200
    code, _, text = msa(response)[1], msa(response)[2], msa(response)[3]
    assert code == "AR" and text.startswith(f"portal setting wrong: {setting}")
    assert "207" in "|".join(segment(response, "ERR") or [])
    assert app.repos.appointments.get(appointment_key(env.id, "8500001")) is None
    kept = rejected.list_rejected(app, env.id)
    assert [k.control_id for k in kept] == ["U1"] and kept[0].reason.startswith(f"portal setting wrong: {setting}")


def test_the_intake_is_not_stopped_by_a_write_back_setting_it_does_not_read(app, env):
    corrupt(app, env.id, writeback_retry_horizon_minutes=1)
    assert msa(book(env, "U2"))[1] == "AA"


def test_an_environment_document_that_cannot_be_read_gets_a_problem_naming_the_setting_not_a_500(app, env):
    corrupt(app, env.id, hl7_sending_facilities=["EPIC|ADT"])
    response = book(env, "U3")
    assert response.status_code == 503
    doc = json.loads(response.get_body())
    assert doc["code"] == "environment_settings_invalid" and "(hl7_sending_facilities)" in doc["detail"]


# ---- launch and join ------------------------------------------------------------------------------------------
def launch(env: Any) -> func.HttpResponse:
    from functions.launch import launch_provider

    query = {"iss": env.fhir_base_urls[0], "launch": "abc123"}
    url = "http://127.0.0.1/api/launch/provider?" + urllib.parse.urlencode(query)
    request = func.HttpRequest(method="GET", url=url, params=query, body=b"",
                               headers={"x-forwarded-for": f"127.1.{uuid.uuid4().int % 250}.9"})
    return launch_provider.build().get_user_function()(request)


def test_a_launch_shows_a_page_naming_the_setting_instead_of_missing_keys(app, env):
    corrupt(app, env.id, client_assertion_alg="HS256")
    response = launch(env)
    html = response.get_body().decode()
    assert response.status_code == 500
    assert "ENVIRONMENT_SETTINGS_INVALID" in html and "SMART_KEYS_MISSING" not in html
    assert "client_assertion_alg" in html
    assert f"{app.settings.public_base_url}/api/portal/environments/{env.id}/edit" in html


def test_a_launch_is_not_stopped_by_a_text_setting_it_does_not_read(app, env):
    corrupt(app, env.id, sms__reminder_offsets_minutes=[0])
    html = launch(env).get_body().decode()
    assert "ENVIRONMENT_SETTINGS_INVALID" not in html  # it goes on to SMART discovery (refused: no server there)
    assert "DISCOVERY_FAILED" in html


def test_the_join_api_answers_problem_json_naming_the_state(app, env):
    from functions.join import _api_error
    from lib.smart.errors import LaunchError

    _, token = visit_with_join_link(app, env.id, "8500002", START)
    corrupt(app, env.id, presence_source="psychic")
    with pytest.raises(LaunchError) as refused:
        app.join.call(token)
    assert refused.value.code == "ENVIRONMENT_SETTINGS_INVALID" and "presence_source" in refused.value.admin_hint
    answer = _api_error(refused.value, "corr-1")
    assert answer.status_code == 500 and answer.mimetype == "application/problem+json"
    assert json.loads(answer.get_body())["code"] == "ENVIRONMENT_SETTINGS_INVALID"


# ---- texts and write-back -------------------------------------------------------------------------------------
def test_a_queued_text_fails_with_the_setting_named_and_nothing_is_sent(app, env, service_settings):
    from azure.functions.queue import QueueMessage

    from functions.reminders import sms_outbox
    from lib.queues import encode

    acs = AcsStandin(service_settings)
    assert msa(book(env, "U4", csn="8500003"))[1] == "AA"
    corrupt(app, env.id, lobby_bypass_scope="everyone")  # changed after the booking, before the text went out
    [item] = [i for i in app.repos.outbox.for_appointment(appointment_key(env.id, "8500003")) if i.kind == "booked"]
    sms_outbox.build().get_user_function()(QueueMessage(id="m1", body=encode({"id": item.id}).encode(),
                                                        dequeue_count=1))
    after = app.repos.outbox.get(item.id)
    assert after.state == "failed"
    assert after.reason.startswith("portal setting wrong: lobby_bypass_scope: ")
    assert acs.texts(env.id) == []


def test_a_write_back_fails_listed_with_the_setting_named_then_replays_once_corrected(app, env):
    from lib.operations import poison

    corrupt(app, env.id, writeback_retry_horizon_minutes=1)
    key = appointment_key(env.id, "8500004")
    event, _ = app.repos.visit_events.create_once(VisitEvent(
        id=f"ev-{uuid.uuid4().hex[:8]}", appointment_key=key, environment_id=env.id, appointment_id="8500004",
        type="connected", role="patient", participant_id="patient", at_utc=NOW))
    outcome = app.writeback.write(event.id, key)
    stored = app.repos.visit_events.get(key, event.id)
    assert outcome.outcome == "failed" and stored.writeback == "failed"
    assert stored.writeback_reason == "environment_settings_invalid"
    assert stored.epic_detail.startswith("portal setting wrong: writeback_retry_horizon_minutes: ")
    assert event.id in {p.event_id for p in poison.list_poison(app, env.id)}


def test_the_portal_and_its_api_say_an_unreadable_environment_cannot_be_read_not_a_500(app, env):
    from functions.admin import _call
    from functions.portal import _guarded

    corrupt(app, env.id, hl7_sending_facilities=["EPIC|ADT"])
    request = func.HttpRequest(method="GET", url=f"http://127.0.0.1/api/config/environments/{env.id}", headers={},
                               params={}, route_params={"environmentId": env.id}, body=b"")
    answer = _call(request, lambda: app.portal.environments.get(env.id))
    doc = json.loads(answer.get_body())
    assert answer.status_code == 409 and doc["code"] == "ENVIRONMENT_UNREADABLE"
    assert f"'{env.id}'" in doc["detail"] and "hl7_sending_facilities" in doc["detail"]
    page = _guarded(request, lambda: app.portal.environments.get(env.id))
    assert page.status_code == 409 and "hl7_sending_facilities" in page.get_body().decode()
    # The list leaves it out (the others still load) and names it for the warning.
    assert env.id not in {e.id for e in app.portal.environments.list()}
    assert env.id in {u.environment_id for u in app.portal.environments.unreadable()}
