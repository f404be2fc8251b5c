"""Hostile requests over HTTP (dev runner, Cosmos-compatible server, Azurite): bodies on every route that reads
one, and sign-in return paths (`?next=`) that would leave the site.

The routes are enumerated from ``function_app.app`` itself, so a route added later is covered without editing
this file: every POST/PATCH/PUT answers a deeply nested JSON body (``[`` 100,000 deep, which makes Python's JSON
parser raise ``RecursionError``) with a problem document, never a 500. Form routes (``portal/...``) refuse the
JSON media type (415) before reading the body; HL7 intake judges the signature before the body.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import secrets
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.portal_client import PortalUser, problem_code
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: The tester's body: 200 kB, within the admin API's and Graph's body caps.
DEEP = b"[" * 100_000 + b"]" * 100_000
#: 5,000 deep (10 kB): within every route's body cap, so the parse itself is reached (Python gives up at ~1,000).
DEEP_SMALL = b"[" * 5_000 + b"]" * 5_000
#: Routes that take something other than a JSON body, with the status a JSON body gets there.
NOT_JSON = {"hl7/{environmentId}": {401, 403, 404, 415},
            "config/environments/{environmentId}/certificates": {422}}  # the body is a .cer file


def _changing_routes(app: Any) -> list[tuple[str, str]]:
    """(method, route) of every HTTP function of ``app`` that accepts a body (the dev runner's index of it)."""
    from local.devrunner import index_functions

    found = set()
    for info in index_functions(app):
        if info.trigger == "httpTrigger":
            found |= {(m.upper(), info.binding["route"]) for m in info.binding.get("methods") or []
                      if m.upper() in {"POST", "PATCH", "PUT"}}
    return sorted(found)


@pytest.fixture(scope="module")
def served(app: Any, service_settings: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """The app on the dev runner and its private ``function_app`` module (its routes)."""
    from local.devrunner import DevRunner

    spec = importlib.util.spec_from_file_location("function_app_hostile_tests", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    public = service_settings["PUBLIC_BASE_URL"]
    dev = DevRunner(module.app, port=urllib.parse.urlsplit(public).port or 7171, host_json=ROOT / "host.json",
                    timers=False, queues=False)
    dev.start()
    try:
        yield public, module.app
    finally:
        dev.stop(timeout=10)


@pytest.fixture(scope="module")
def join_token(app: Any) -> str:
    """A join link to an open visit."""
    from lib.models import Appointment

    environment = make_environment(app, f"h-{secrets.token_hex(5)}")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    link_id = secrets.token_urlsafe(16)
    appointment = app.repos.appointments.create(Appointment(
        environment.id, f"9{secrets.randbelow(10**8):08d}", "booked", start, start + timedelta(minutes=20), 20,
        "America/New_York", link_id=link_id))
    expires = start + timedelta(hours=3)
    app.repos.links.put(link_id, appointment.key, expires=expires, now=datetime.now(UTC))
    return app.join_links.token(link_id, expires)


def _url(base: str, route: str, *, token: str, env: str) -> str:
    path = route.replace("{token}", token).replace("{environmentId}", env).replace("{thumbprint}", "00" * 32)
    path = path.replace("{purchaseId}", "p1")
    return f"{base}/api/{path}"


def test_every_route_that_reads_a_body_answers_a_deeply_nested_one_with_a_problem_not_a_500(
        served: tuple[str, Any], app: Any, service_settings: dict[str, str], join_token: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    base, function_app = served
    key = "hostile-bodies-webhook-key"  # Event Grid's key, so the ACS webhook reaches its body
    monkeypatch.setattr(app, "settings", dataclasses.replace(app.settings, eventgrid_webhook_key=key))
    routes = _changing_routes(function_app)
    assert ("PATCH", "config/environments/{environmentId}") in routes and ("POST", "join/{token}/events") in routes
    admin = PortalUser(base, "admin@contoso.example", ("Admin", "Approver"), service_settings["REQUESTS_CA_BUNDLE"])
    environment = make_environment(app, f"h-{secrets.token_hex(5)}")
    answers = {}
    for method, route in routes:
        url = _url(base, route, token=join_token, env=environment.id)
        params = {"code": key} if route == "events/acs" else None
        answer = admin.session.request(method, url, data=DEEP_SMALL, params=params, allow_redirects=False, timeout=60,
                                       headers={"Content-Type": "application/json", "X-CSRF-Token": admin.csrf})
        answers[(method, route)] = answer.status_code
        if route.startswith("portal/"):  # form pages: the JSON media type is refused before the body is read
            assert answer.status_code == 415 and "text/html" in answer.headers["content-type"], (route, answer.text)
            continue
        assert answer.headers.get("content-type", "").startswith("application/problem+json"), (route, answer.text)
        doc = answer.json()
        assert doc["status"] == answer.status_code and doc["detail"], route
        assert answer.status_code in NOT_JSON.get(route, {400}), (route, answer.status_code, answer.text)
    assert answers[("PATCH", "config/environments/{environmentId}")] == 400
    assert answers[("POST", "notifications/graph")] == answers[("POST", "notifications/graph/lifecycle")] == 400


@pytest.mark.parametrize("body", [DEEP, DEEP_SMALL, b"\xff\xfe{", b"{not json", b'{"type": '])
def test_the_admin_api_names_an_unreadable_body_bad_json(served: tuple[str, Any], app: Any,
                                                         service_settings: dict[str, str], body: bytes) -> None:
    base, _ = served
    admin = PortalUser(base, "admin@contoso.example", ("Admin",), service_settings["REQUESTS_CA_BUNDLE"])
    environment = make_environment(app, f"h-{secrets.token_hex(5)}")
    answer = admin.send("PATCH", f"/api/config/environments/{environment.id}", data=body,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and problem_code(answer) == "BAD_JSON", answer.text


def test_the_join_routes_refuse_a_body_over_16_kib_with_413(served: tuple[str, Any], join_token: str) -> None:
    base, _ = served
    big = json.dumps({"type": "page_opened", "attempt": "x" * 20_000})
    answer = requests.post(f"{base}/api/join/{join_token}/events", data=big, timeout=10,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and problem_code(answer) == "TOO_LARGE", answer.text


@pytest.mark.parametrize("suffix", ["events", "call"])
@pytest.mark.parametrize("body", [DEEP_SMALL, b"{not json", b'{"type": "no-such-type"}'])
def test_a_bad_body_on_a_join_link_we_never_issued_is_judged_as_the_link_404(
        served: tuple[str, Any], app: Any, suffix: str, body: bytes) -> None:
    base, _ = served
    forged = app.join_links.token(secrets.token_urlsafe(16), datetime.now(UTC) + timedelta(hours=1))
    answer = requests.post(f"{base}/api/join/{forged}/{suffix}", data=body, timeout=30,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 404 and problem_code(answer) == "LINK_INVALID", answer.text


def test_a_bad_body_on_a_good_join_link_is_400_bad_json(served: tuple[str, Any], join_token: str) -> None:
    base, _ = served
    answer = requests.post(f"{base}/api/join/{join_token}/events", data=DEEP_SMALL, timeout=30,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and problem_code(answer) == "BAD_JSON", answer.text


@pytest.mark.parametrize("route", ["notifications/graph", "notifications/graph/lifecycle"])
def test_graph_notification_routes_refuse_the_100000_deep_body_as_not_a_delivery(served: tuple[str, Any],
                                                                                   route: str) -> None:
    base, _ = served
    answer = requests.post(f"{base}/api/{route}", data=DEEP, timeout=30, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "not_json" in answer.json()["detail"], answer.text


def test_read_json_names_each_failure() -> None:
    from functions.http import UnreadableJson, read_json

    for raw, reason in [(DEEP, "too_deep"), (b"\xff", "not_utf8"), (b"{", "not_json"), (b"[1]" * 10, "too_large")]:
        with pytest.raises(UnreadableJson) as caught:
            read_json(raw, max_bytes=len(DEEP) if reason != "too_large" else 29)
        assert caught.value.reason == reason
    assert read_json(b"", max_bytes=1, empty={}) == {} and read_json(b'{"a": [1]}', max_bytes=99) == {"a": [1]}


def test_the_csrf_refusal_names_the_session_route_that_exists(served: tuple[str, Any],
                                                              service_settings: dict[str, str]) -> None:
    base, _ = served
    admin = PortalUser(base, "admin@contoso.example", ("Admin",), service_settings["REQUESTS_CA_BUNDLE"])
    refused = admin.send("POST", "/api/config/environments", {}, csrf=False)
    assert refused.status_code == 403 and problem_code(refused) == "CSRF_FAILED"
    named = re.search(r"GET (/api/\S+)", refused.json()["detail"])
    assert named and named.group(1) == "/api/config/session"
    assert admin.get(named.group(1)).json()["csrfToken"]


# ---- sign-in return paths (?next=) ---------------------------------------------------------------------------
def _session(ca: str) -> requests.Session:
    session = requests.Session()
    session.verify = ca
    return session


def test_a_deep_link_survives_sign_in(served: tuple[str, Any], app: Any, service_settings: dict[str, str]) -> None:
    base, _ = served
    environment = make_environment(app, f"h-{secrets.token_hex(5)}")
    browser = _session(service_settings["REQUESTS_CA_BUNDLE"])
    deep = f"/api/portal/environments/{environment.id}/sms?saved=1"
    first = browser.get(base + deep, allow_redirects=False)
    assert first.status_code == 303
    signin = first.headers["Location"]
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(signin).query)["next"] == [deep]
    page = browser.get(base + signin)
    assert f'<input type="hidden" name="next" value="{deep.replace("&", "&amp;")}">' in page.text
    signed = browser.post(f"{base}/api/portal/signin", data={"name": "admin@contoso.example", "roles": ["Admin"],
                                                             "next": deep}, allow_redirects=False)
    assert signed.status_code == 303 and signed.headers["Location"] == deep
    assert browser.get(base + deep, allow_redirects=False).status_code == 200


@pytest.mark.parametrize("next_value", ["//evil.example/api/portal", "https://evil.example/api/portal",
                                        "/\\evil.example", "/%2F%2Fevil.example", "/api/portal/..%2F..%2Fevil"])
def test_sign_in_never_sends_the_browser_to_another_site(served: tuple[str, Any], service_settings: dict[str, str],
                                                         next_value: str) -> None:
    base, _ = served
    browser = _session(service_settings["REQUESTS_CA_BUNDLE"])
    page = browser.get(f"{base}/api/portal/signin", params={"next": next_value})
    assert page.status_code == 200 and 'name="next"' not in page.text
    signed = browser.post(f"{base}/api/portal/signin", data={"name": "admin@contoso.example", "roles": ["Admin"],
                                                             "next": next_value}, allow_redirects=False)
    assert signed.status_code == 303 and signed.headers["Location"] == "/api/portal"
