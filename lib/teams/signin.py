"""The clinician's one-time Microsoft 365 sign-in: OpenID Connect authorization code flow with PKCE, through
MSAL's ``ConfidentialClientApplication`` (the same app registration and certificate credential as the app-only
Graph calls).

Only the signed-in user's Entra object ID (``oid`` claim of the id_token) is used; it is stored as
EHR user ID -> Entra object ID (``users``). The delegated tokens MSAL receives are dropped from its cache at
once: the app never calls Graph on the clinician's behalf (meetings are created app-only with the clinician
as organizer, which the application access policy allows).

MSAL (``initiate_auth_code_flow`` / ``acquire_token_by_auth_code_flow``) generates the PKCE pair and the nonce,
checks ``state`` against the flow and the id_token's ``nonce``; the flow dict is kept server-side
(:class:`lib.store.signin_states.SignInState`), never in the browser.
Entra docs: "Microsoft identity platform and OAuth 2.0 authorization code flow"; MSAL Python
``ClientApplication.initiate_auth_code_flow``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from lib.smart.errors import LaunchError

log = logging.getLogger(__name__)

#: Delegated scopes of the sign-in: MSAL adds ``openid profile offline_access``; ``User.Read`` is the
#: least privilege Entra accepts for an id_token with ``oid``.
SIGNIN_SCOPES = ("User.Read",)
SIGNIN_PATH = "/api/launch/signin"


class EntraSignIn(Protocol):
    """Starts and finishes a delegated sign-in."""

    def begin(self, *, state: str, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        """``(authorize URL, flow)``: send the browser to the URL; keep the flow server-side."""
        ...

    def finish(self, flow: dict[str, Any], response: Mapping[str, str]) -> str:
        """The signed-in user's Entra object ID, from the redirect's query ``response``.

        Raises:
            LaunchError: ``SIGNIN_FAILED`` (Entra error, state/nonce mismatch, no ``oid``), ``LAUNCH_EXPIRED``
                (code expired or redeemed), ``GRAPH_UNAVAILABLE`` (Entra unreachable).
        """
        ...


class MsalEntraSignIn:
    """:class:`EntraSignIn` with MSAL.

    Args:
        application: returns the MSAL ``ConfidentialClientApplication`` (shared with the app-only token
            source, built on first use): builds the authorize URL.
        redeemer: returns a *new* MSAL application for one code redemption (its own token cache and client
            assertion); defaults to ``application``.
    """

    def __init__(self, application: Callable[[], Any], redeemer: Callable[[], Any] | None = None) -> None:
        self._application = application
        self._redeemer = redeemer or application

    def begin(self, *, state: str, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        """Build the authorize URL (``response_type=code``, PKCE S256, ``nonce``, ``prompt=select_account``)."""
        flow = self._application().initiate_auth_code_flow(
            list(SIGNIN_SCOPES), redirect_uri=redirect_uri, state=state, prompt="select_account")
        if "auth_uri" not in flow:
            raise LaunchError("SIGNIN_FAILED", "MSAL could not build the sign-in request.")
        return str(flow["auth_uri"]), dict(flow)

    def finish(self, flow: dict[str, Any], response: Mapping[str, str]) -> str:
        """Redeem the code (confidential client, certificate assertion + PKCE verifier); return ``oid``."""
        app = self._redeemer()
        try:
            result = app.acquire_token_by_auth_code_flow(dict(flow), dict(response), scopes=list(SIGNIN_SCOPES))
        except ValueError as exc:  # MSAL raises ValueError for a state mismatch
            raise LaunchError("SIGNIN_FAILED", "The sign-in answer did not match the sign-in request (state).") \
                from exc
        except Exception as exc:  # requests errors surface from MSAL unchanged
            raise LaunchError("GRAPH_UNAVAILABLE", f"Entra ID is unreachable ({type(exc).__name__}).") from exc
        try:
            if "error" in result:
                error = str(result.get("error") or "unknown")
                if error == "invalid_grant":
                    raise LaunchError("LAUNCH_EXPIRED", "Entra ID refused the sign-in code (expired or already "
                                                        "redeemed): the clinician reloaded the sign-in callback.")
                codes = result.get("error_codes") or []
                hint = f"Entra ID answered '{error}' (AADSTS codes {codes}). "
                raise LaunchError("SIGNIN_FAILED", hint + _signin_hint())
            claims = result.get("id_token_claims") or {}
            oid = claims.get("oid")
            if not isinstance(oid, str) or not oid:
                raise LaunchError("SIGNIN_FAILED", "The sign-in's id_token has no oid claim.")
            return oid
        finally:
            _forget_accounts(app)


def _signin_hint() -> str:
    from lib.smart.errors import CATALOG

    return CATALOG["SIGNIN_FAILED"].admin_hint


def _forget_accounts(app: Any) -> None:
    """Drop every delegated account (and its tokens) from MSAL's in-memory cache; app tokens stay."""
    try:
        for account in app.get_accounts():
            app.remove_account(account)
    except Exception:  # never let cache housekeeping fail a launch
        log.warning("could not clear MSAL accounts after a sign-in")
