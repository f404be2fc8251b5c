"""Epic's OAuth error answers: its own words shown safely, and the causes they name mapped to their pages."""

from __future__ import annotations

import pytest

from lib.config.approvals import approval_refusal
from lib.smart.oauth_errors import MAX_WORDS, OAuthError, authorize_refusal, safe_words


@pytest.mark.parametrize(("error", "words", "code"), [
    ("invalid_request", "launch has already been used", "LAUNCH_EXPIRED"),
    ("invalid_request", "launch has expired", "LAUNCH_EXPIRED"),
    ("invalid_request", "launch is unknown", "LAUNCH_EXPIRED"),
    ("invalid_request", "aud must equal the FHIR base URL (iss) exactly", "EPIC_AUDIENCE_REFUSED"),
    ("invalid_request", "redirect_uri is missing or not registered for this client", "EPIC_AUTHORIZE_ERROR"),
    ("invalid_scope", "scope must include launch and openid", "EPIC_SCOPE_NOT_GRANTED"),
    ("invalid_scope", None, "EPIC_SCOPE_NOT_GRANTED"),
    ("unauthorized_client", "client_id is missing or not registered", "EPIC_CLIENT_NOT_MAPPED"),
    ("unauthorized_client", None, "EPIC_CLIENT_NOT_MAPPED"),
    ("access_denied", "too many failed sign-ins", "EPIC_AUTHORIZE_ERROR"),
    ("invalid_request", "code_challenge_method must be S256", "EPIC_AUTHORIZE_ERROR"),
    ("server_error", None, "EPIC_AUTHORIZE_ERROR"),
])
def test_an_authorize_refusal_gets_the_page_of_its_cause_with_epics_words(error, words, code):
    refusal = authorize_refusal(OAuthError.read(error, words))
    assert refusal.code == code
    assert f"Epic answered '{error}'" in refusal.admin_hint
    assert (f'"{words}"' if words else "(no description)") in refusal.admin_hint


def test_a_used_launch_blames_no_registration_and_a_wrong_aud_names_the_fhir_url():
    used = authorize_refusal(OAuthError.read("invalid_request", "launch has already been used"))
    assert "start the visit again from Epic" in used.admin_hint and "client ID" not in used.admin_hint
    assert used.status == 400
    aud = authorize_refusal(OAuthError.read("invalid_request", "aud must equal the FHIR base URL (iss) exactly"))
    assert "FHIR base URL registered for the environment" in aud.admin_hint and aud.status == 403
    redirect = authorize_refusal(OAuthError.read("invalid_request", "redirect_uri is not registered"))
    assert "{public}/api/launch/callback" in redirect.admin_hint  # the trigger fills in PUBLIC_BASE_URL


def test_epics_words_are_one_printable_line_capped_and_hide_token_like_runs():
    assert safe_words("launch\r\nhas\x00 already\tbeen used ") == "launch has already been used"
    long = safe_words("word " * 200)
    assert long is not None and len(long) == MAX_WORDS and long.endswith("...")
    hidden = safe_words("launch 8f14e45fceea167a5a36dedd4bea2543 is unknown; launch=eyJhbGciOi.eyJzdWIiOjF9.sig12345")
    assert hidden == "launch [...] is unknown; launch=[...]"
    assert safe_words("https://fhir.contoso.example/interconnect-aocurprd-oauth/api/FHIR/R4 is not allowed") == (
        "https://fhir.contoso.example/interconnect-aocurprd-oauth/api/FHIR/R4 is not allowed")
    assert safe_words("") is None and safe_words(None) is None and safe_words(["x"]) is None
    assert OAuthError.read("<script>", "x").code == "unknown"


def test_the_approval_refusal_says_what_to_do_in_epics_words():
    url, redirect = "https://epic.example/org1/api/FHIR/R4", "https://vv.example/api/portal/approvals/callback"

    def refusal(error: str, words: str | None) -> str:
        return approval_refusal(OAuthError.read(error, words), url=url, client_id="c-1", redirect_uri=redirect)

    aud = refusal("invalid_request", "aud must equal the FHIR base URL (iss) exactly")
    assert aud.startswith("Epic refused the sign-in. Epic answered 'invalid_request': \"aud must equal")
    assert f"the URL being approved ({url})" in aud and "JWKS" not in aud
    assert f"Register {redirect} as a redirect URI of client c-1" in refusal("invalid_request", "bad redirect_uri")
    assert "lacks the security" in refusal("access_denied", "too many failed sign-ins")
    assert "JWKS URL" in refusal("server_error", None)  # no known cause: the general advice
