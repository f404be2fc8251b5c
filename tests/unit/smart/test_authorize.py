"""Step 4, the authorization request: PKCE S256, aud = iss, GET or auto-submitted POST."""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse

from lib.smart.authorize import (
    Pkce,
    build_authorize_request,
    callback_url,
    new_pkce,
    scopes_for,
)
from lib.smart.discovery import SmartConfiguration

ISS = "https://ehr.example.org/api/FHIR/R4"


def config(*capabilities: str) -> SmartConfiguration:
    return SmartConfiguration(fhir_base_url=ISS, authorization_endpoint="https://ehr.example.org/oauth2/authorize",
                              token_endpoint="https://ehr.example.org/oauth2/token",
                              capabilities=frozenset(capabilities))


def request(cfg: SmartConfiguration, **overrides: str):
    args = {"client_id": "c1", "redirect_uri": "https://app.example.org/api/launch/callback",
                "scope": "launch openid fhirUser user/Appointment.read", "state": "s" * 43, "launch": "L<1>&x",
                "pkce": Pkce("v" * 43, "c" * 43), "nonce": "n" * 43}
    args.update(overrides)
    return build_authorize_request(cfg, **args)  # type: ignore[arg-type]


def test_pkce_challenge_matches_rfc7636_appendix_b():
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    assert create_s256_code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == \
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_pkce_is_s256_of_an_unreserved_verifier_of_43_to_128_characters():
    pkce = new_pkce()
    assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", pkce.verifier)
    digest = base64.urlsafe_b64encode(hashlib.sha256(pkce.verifier.encode()).digest()).rstrip(b"=").decode()
    assert (pkce.challenge, pkce.method) == (digest, "S256")
    assert new_pkce().verifier != pkce.verifier


def test_get_request_when_authorize_post_is_not_offered():
    req = request(config("launch-ehr"))
    assert req.method == "GET"
    parts = urllib.parse.urlsplit(req.redirect_url())
    params = dict(urllib.parse.parse_qsl(parts.query))
    assert params == {
        "response_type": "code", "client_id": "c1", "redirect_uri": "https://app.example.org/api/launch/callback",
        "scope": "launch openid fhirUser user/Appointment.read", "state": "s" * 43, "aud": ISS,
        "launch": "L<1>&x", "code_challenge": "c" * 43, "code_challenge_method": "S256", "nonce": "n" * 43,
    }


def test_post_form_when_authorize_post_is_offered_escapes_values_and_allows_the_whole_redirect_chain():
    from lib.visits.launch_pages import authorize_post_page

    req = request(config("launch-ehr", "authorize-post"))
    assert req.method == "POST"
    page = authorize_post_page(req, redirect_origins=("https://login.example.net", "https://teams.example.net"),
                               frame_ancestors=("https://epic.example.org",), cookies=())
    assert '<form method="post" action="https://ehr.example.org/oauth2/authorize" id="authorize">' in page.html
    assert 'name="launch" value="L&lt;1&gt;&amp;x"' in page.html
    assert "<script>" not in page.html and '<script src="/api/static/js/authorize.js?v=' in page.html
    directives = dict(p.split(" ", 1) for p in page.headers["Content-Security-Policy"].split("; "))
    assert directives["script-src"] == "'self'"
    # Chromium checks form-action on every redirect after the POST: EHR -> our callback -> sign-in / Teams.
    assert directives["form-action"] == \
        "'self' https://ehr.example.org https://login.example.net https://teams.example.net"
    assert directives["frame-ancestors"] == "'self' https://epic.example.org"


def test_scopes_v1_by_default_and_v2_when_only_v2_is_offered():
    assert scopes_for("provider", config("permission-v1")) == "launch openid fhirUser user/Appointment.read"
    assert scopes_for("patient", config()) == "launch openid fhirUser patient/Appointment.read"
    assert scopes_for("provider", config("permission-v2")) == "launch openid fhirUser user/Appointment.rs"
    assert scopes_for("patient", config("permission-v1", "permission-v2")).endswith("patient/Appointment.read")


def test_callback_url_is_under_the_public_base_url():
    assert callback_url("https://app.example.org/") == "https://app.example.org/api/launch/callback"
