"""Portal sign-in: the Easy Auth principal is trusted only when the platform's authentication is on; the local
sign-in only against the local emulators; CSRF tokens are bound to one user."""

from __future__ import annotations

import base64
import json

import pytest

from lib.config.access import Access, CsrfTokens, Forbidden, NotSignedIn, Principal, require
from lib.settings import SettingsError, load_settings

OID = "11111111-2222-3333-4444-555555555555"
TENANT = "5a1e7e57-0000-4000-8000-000000000001"
SECRET = b"s" * 32


def principal_header(**over: object) -> str:
    claims = [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": OID},
              {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TENANT},
              {"typ": "preferred_username", "val": "admin@contoso.example"}, {"typ": "aud", "val": "app-1"},
              {"typ": "roles", "val": "Admin"}, {"typ": "roles", "val": "Unrelated"}]
    doc = {"auth_typ": "aad", "claims": claims, "name_typ": "preferred_username", "role_typ": "roles", **over}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def easy_auth(**kw: object) -> Access:
    return Access(secret=SECRET, easy_auth_enabled=True, tenant_id=TENANT, audience="app-1", **kw)  # type: ignore[arg-type]


def test_the_platform_principal_gives_the_user_and_only_known_roles():
    found = easy_auth().principal({"X-MS-CLIENT-PRINCIPAL": principal_header(), "X-MS-CLIENT-PRINCIPAL-ID": OID}, {})
    assert found == Principal(OID, "admin@contoso.example", frozenset({"Admin"}), "easy-auth")


def test_without_platform_authentication_a_principal_header_is_a_forgery():
    access = Access(secret=SECRET, easy_auth_enabled=False, dev_signin=True)
    with pytest.raises(NotSignedIn) as err:
        access.principal({"x-ms-client-principal": principal_header()}, {})
    assert err.value.forged
    with pytest.raises(NotSignedIn) as err:
        access.principal({"X-MS-CLIENT-PRINCIPAL-NAME": "admin@contoso.example"}, {})
    assert err.value.forged


@pytest.mark.parametrize(("header", "headers", "reason"), [
    (principal_header(auth_typ="google"), {}, "Only Microsoft Entra ID"),
    (principal_header(), {"X-MS-CLIENT-PRINCIPAL-ID": "someone-else"}, "disagree"),
    ("not base64 json!", {}, "not valid base64 JSON"),
])
def test_a_malformed_or_foreign_principal_is_refused(header: str, headers: dict, reason: str):
    with pytest.raises(NotSignedIn) as err:
        easy_auth().principal({"X-MS-CLIENT-PRINCIPAL": header, **headers}, {})
    assert reason in err.value.reason


def test_another_tenant_or_audience_is_refused():
    with pytest.raises(NotSignedIn, match="another Entra tenant"):
        Access(secret=SECRET, easy_auth_enabled=True, tenant_id="other").principal(
            {"X-MS-CLIENT-PRINCIPAL": principal_header()}, {})
    with pytest.raises(NotSignedIn, match="another application"):
        Access(secret=SECRET, easy_auth_enabled=True, audience="app-2").principal(
            {"X-MS-CLIENT-PRINCIPAL": principal_header()}, {})


def test_with_platform_authentication_the_local_sign_in_cookie_is_ignored():
    access = easy_auth(dev_signin=True)
    cookie = Access(secret=SECRET, easy_auth_enabled=False, dev_signin=True).dev_cookie("me", ["Admin"])
    with pytest.raises(NotSignedIn, match="Sign in with your Microsoft 365 account"):
        access.principal({}, {"vv_portal_dev": cookie})


def test_a_tampered_local_cookie_is_refused():
    access = Access(secret=SECRET, easy_auth_enabled=False, dev_signin=True)
    body, _, mac = access.dev_cookie("reader", ["ReportsReader"]).partition(".")
    forged_body = base64.urlsafe_b64encode(json.dumps({"n": "reader", "r": ["Admin"], "e": 4e9}).encode())
    with pytest.raises(NotSignedIn):
        access.principal({}, {"vv_portal_dev": forged_body.decode().rstrip("=") + "." + mac})
    assert access.principal({}, {"vv_portal_dev": body + "." + mac}).roles == frozenset({"ReportsReader"})


def test_require_names_the_missing_role():
    reader = Principal("u", "reader@contoso.example", frozenset({"ReportsReader"}), "local-dev")
    with pytest.raises(Forbidden, match="needs the Admin role"):
        require(reader, "Admin")
    assert require(reader, "Admin", "ReportsReader") is reader


def test_csrf_tokens_are_bound_to_the_user_and_expire():
    tokens = CsrfTokens(SECRET)
    alice = Principal("a", "alice", frozenset(), "local-dev")
    bob = Principal("b", "bob", frozenset(), "local-dev")
    token = tokens.issue(alice, now=1000)
    assert tokens.check(alice, token, now=1001)
    assert not tokens.check(bob, token, now=1001)
    assert not tokens.check(alice, token, now=1000 + 9 * 3600)
    assert not tokens.check(alice, None) and not tokens.check(alice, "1000.forged")


BASE = {"COSMOS_ENDPOINT": "https://127.0.0.1:8081/", "LINK_SIGNING_KEY": base64.b64encode(SECRET).decode(),
        "PUBLIC_BASE_URL": "http://127.0.0.1:7071", "PORTAL_DEV_SIGNIN": "1"}


@pytest.mark.parametrize("environ", [
    {**BASE},  # no COSMOS_EMULATOR
    {**BASE, "COSMOS_EMULATOR": "1", "COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/"},
    {**BASE, "COSMOS_EMULATOR": "1", "WEBSITE_INSTANCE_ID": "abc"},
])
def test_the_local_sign_in_is_refused_by_configuration_outside_the_emulators(environ: dict):
    with pytest.raises(SettingsError, match="PORTAL_DEV_SIGNIN"):
        load_settings(environ)


def test_the_local_sign_in_is_allowed_against_the_emulators():
    assert load_settings({**BASE, "COSMOS_EMULATOR": "1"}).portal_dev_signin
