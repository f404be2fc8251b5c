"""What "Disable this environment" stops and what it keeps (docs/portal.md "Disabling an environment"), face by
face: HL7 is still accepted and stored (nothing lost), no text is sent, a patient's join link shows "video visits
are switched off" and gets no call identity; enabling it again lets the same link lead to the visit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest

from lib.config.access import Principal
from lib.models import appointment_key
from tests.integration.test_sms_flow import CSN, NOW, book, send_queued
from tests.support.calls import msa
from tests.support.join_links import visit_with_join_link
from tests.support.standins import AcsStandin

pytestmark = pytest.mark.integration

ADMIN = Principal(user_id="local:admin", name="admin@contoso.example", roles=frozenset({"Admin"}), source="local-dev")


@pytest.fixture
def acs(service_settings: dict[str, str]) -> Any:
    return AcsStandin(service_settings)


@pytest.fixture
def env(app: Any, clock: Any, environment_id: str) -> Any:
    from tests.support.environments import make_environment

    clock.set(NOW)
    return make_environment(app, environment_id)


def _join(name: str, token: str, method: str = "GET", path: str = "") -> func.HttpResponse:
    from functions import join

    request = func.HttpRequest(method, f"http://127.0.0.1/api/join/{token}{path}", params={}, body=b"{}",
                               headers={"content-type": "application/json", "accept-language": "es"},
                               route_params={"token": token})
    return getattr(join, name).build().get_user_function()(request)


def test_a_disabled_environment_keeps_its_hl7_but_sends_no_text(app: Any, env: Any, acs: Any) -> None:
    app.portal.environments.set_disabled(env.id, True, "incident 42", ADMIN)
    answer = book(env)
    assert answer.status_code == 200 and msa(answer)[1] == "AA"  # accepted: Epic does not queue it up
    stored = app.repos.appointments.get(appointment_key(env.id, CSN))
    assert stored is not None and stored.status == "booked"  # the appointment is current
    assert send_queued(app, env) == ["skipped"]
    assert acs.texts(env.id) == []


def test_a_disabled_environment_refuses_patient_joins_with_a_patient_page(app: Any, env: Any) -> None:
    _, token = visit_with_join_link(app, env.id, "8100077", NOW + timedelta(minutes=5))
    app.portal.environments.set_disabled(env.id, True, "", ADMIN)

    page = _join("join_page", token)
    assert page.status_code == 403
    body = page.get_body().decode()
    assert "Las visitas por video están desactivadas" in body and "Llame a su clínica" in body  # their language
    assert 'id="join"' not in body
    call = _join("join_call", token, "POST", "/call")
    assert call.status_code == 403 and b"ENVIRONMENT_DISABLED" in call.get_body()

    app.portal.environments.set_disabled(env.id, False, "", ADMIN)
    app.join.check_link(token)  # the same link leads to the visit again (no ENVIRONMENT_DISABLED)


def test_disabling_twice_writes_one_audit_entry(app: Any, env: Any) -> None:
    app.portal.environments.set_disabled(env.id, True, "first", ADMIN)
    app.portal.environments.set_disabled(env.id, True, "again", ADMIN)
    actions = [e.action for e in app.portal.audit.for_environment(env.id)]
    assert actions.count("environment.disable") == 1
