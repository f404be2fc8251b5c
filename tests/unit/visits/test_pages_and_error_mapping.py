"""The one error page, and the HTTP triggers' mapping of errors to it."""

from __future__ import annotations

import azure.functions as func
from markupsafe import escape

from lib.smart.errors import CATALOG, LaunchError
from lib.visits.pages import Cookie, error_page
from lib.visits.throttle import AnonymousThrottle


def test_error_page_shows_message_code_fix_and_correlation_and_escapes():
    page = error_page(LaunchError("ISS_NOT_ALLOWED", "Register <b>it</b>"), "corr-1")
    assert page.status == 403
    assert '<code id="error-code">ISS_NOT_ALLOWED</code>' in page.html
    assert '<code id="correlation-id">corr-1</code>' in page.html
    assert "Register &lt;b&gt;it&lt;/b&gt;" in page.html
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_throttling_page_has_retry_after():
    page = error_page(LaunchError("GRAPH_THROTTLED", retry_after=9), "c")
    assert (page.status, page.headers["Retry-After"]) == (503, "9")


def test_every_code_has_a_status_message_and_hint():
    for code, info in CATALOG.items():
        assert 400 <= info.status < 600 and info.user_message and info.admin_hint, code


def test_cookie_header():
    assert Cookie("vv_launch", "abc", 600, "/api/launch", True).header() == \
        "vv_launch=abc; Max-Age=600; Path=/api/launch; HttpOnly; SameSite=Lax; Secure"
    assert "Secure" not in Cookie("vv_launch", "abc", 600, "/api/launch", False).header()
    # The launch cookie: partitioned (CHIPS), so it survives in Epic's cross-site frames.
    assert Cookie("vv_launch", "abc", 600, "/api/launch", True, partitioned=True).header() == \
        "vv_launch=abc; Max-Age=600; Path=/api/launch; HttpOnly; SameSite=None; Secure; Partitioned"


def _get(route: str, params: dict[str, str], route_params: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(method="GET", url=f"http://127.0.0.1/api/{route}", headers={}, params=params,
                            route_params=route_params or {}, body=b"")


def test_trigger_maps_launch_error_to_the_error_page(monkeypatch):
    from functions import launch as trigger

    class Launch:
        def begin(self, *args, **kwargs):
            raise LaunchError("ISS_NOT_ALLOWED")

    class Svc:
        launch = Launch()
        throttle = AnonymousThrottle()

    monkeypatch.setattr(trigger, "services", lambda: Svc())
    resp = trigger.launch_provider.build().get_user_function()(_get("launch/provider", {"iss": "x", "launch": "y"}))
    assert resp.status_code == 403
    assert b"ISS_NOT_ALLOWED" in resp.get_body()
    assert resp.headers["Cache-Control"] == "no-store"


def test_trigger_hides_unexpected_errors_behind_internal_error(monkeypatch, caplog):
    from functions import join as trigger

    class Join:
        def page(self, *args, **kwargs):
            raise RuntimeError("token=secret-value")

    class Svc:
        join = Join()
        throttle = AnonymousThrottle()

    monkeypatch.setattr(trigger, "services", lambda: Svc())
    resp = trigger.join_page.build().get_user_function()(_get("join/t", {}, {"token": "t"}))
    assert resp.status_code == 500
    assert b"INTERNAL_ERROR" in resp.get_body()
    assert b"secret-value" not in resp.get_body()
    assert "secret-value" not in caplog.text


#: The issue's "Errors for people" list: each case has its own code (and so its own page and fix).
GO_LIVE_CASES = {
    "FHIR base URL with the wrong DSTU2/R4 suffix": "FHIR_VERSION_MISMATCH",
    "FHIR base URL not registered": "ISS_NOT_ALLOWED",
    "environment not configured": "ENVIRONMENT_NOT_CONFIGURED",
    "environment not approved": "ENVIRONMENT_NOT_APPROVED",
    "test URL used in production and the reverse": "TENANT_CONFIG_NOT_FOUND",
    "Epic OAuth: keys not registered": "EPIC_KEYS_NOT_REGISTERED",
    "Epic OAuth: client ID not mapped": "EPIC_CLIENT_NOT_MAPPED",
    "launch expired or reused": "LAUNCH_EXPIRED",
    "callback reused": "STATE_INVALID",
    "appointment not found": "APPOINTMENT_NOT_FOUND",
    "appointment cancelled": "APPOINTMENT_CANCELLED",
    "Graph 429": "GRAPH_THROTTLED",
    "Graph 403 application access policy": "GRAPH_ACCESS_POLICY_MISSING",
    "Graph 401 consent": "GRAPH_CONSENT_MISSING",
}


def test_every_go_live_failure_has_its_own_code_and_a_page_with_the_fix():
    assert len(set(GO_LIVE_CASES.values())) == len(GO_LIVE_CASES)
    for code in GO_LIVE_CASES.values():
        page = error_page(LaunchError(code), "corr-9")
        assert f'<code id="error-code">{code}</code>' in page.html
        assert '<code id="correlation-id">corr-9</code>' in page.html
        assert str(escape(CATALOG[code].admin_hint.split(".")[0][:30])) in page.html
        assert "Traceback" not in page.html


def test_tenant_config_not_found_says_so():
    assert CATALOG["TENANT_CONFIG_NOT_FOUND"].admin_hint.startswith("Tenant config not found")
