"""Approval of FHIR base URLs by the Epic analyst named for each (docs/portal.md "Approval").

A decision is a :class:`lib.models.UrlReview` stored in the environment under ``approvals[url]``. An approval
carries the URL's fingerprint (environment, kind, URL, Epic client ID) at the time: when any of them changes the
fingerprint no longer matches and the URL cannot be launched against until it is approved again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.models import EnvironmentConfig, UrlReview, iso
from lib.smart.oauth_errors import OAuthError


@dataclass(frozen=True)
class RevokedApproval:
    """A URL that was approved before a change and is not after it (its kind or Epic client ID changed): every
    launch against it is refused until ``approver`` (``None``: nobody is named yet) approves it again."""

    url: str
    approver: str | None

    @property
    def message(self) -> str:
        """What the admin must know and do next (safe to show)."""
        if self.approver:
            return (f"Launches against {self.url} are refused until {self.approver} signs in to Epic and approves "
                    "it again (portal: Approvals).")
        return (f"Launches against {self.url} are refused until it is approved again, and no approver is named for "
                "it: name one under Edit settings, Approvers; they then sign in to Epic and approve it.")


def revoked_approvals(before: EnvironmentConfig, after: EnvironmentConfig) -> list[RevokedApproval]:
    """The URLs approved in ``before`` that ``after`` still lists but no longer counts as approved."""
    return [RevokedApproval(url, after.approvers.get(url)) for url in before.fhir_base_urls
            if before.url_approved(url) and url in after.fhir_base_urls and not after.url_approved(url)]


def approval(config: EnvironmentConfig, url: str, *, by_id: str, by_name: str, at: datetime,
             fhir_user: str) -> UrlReview:
    """The approval of ``url`` as the environment is now."""
    return UrlReview(status="approved", by_id=by_id, by_name=by_name, at=iso(at) or "",
                     fingerprint=config.approval_fingerprint(url), fhir_user=fhir_user)


def sent_back(config: EnvironmentConfig, url: str, *, by_id: str, by_name: str, at: datetime,
              comment: str) -> UrlReview:
    """The analyst's "send back" of ``url`` with a comment."""
    return UrlReview(status="sent_back", by_id=by_id, by_name=by_name, at=iso(at) or "",
                     fingerprint=config.approval_fingerprint(url), comment=comment)


def with_review(config: EnvironmentConfig, url: str, review: UrlReview) -> EnvironmentConfig:
    """``config`` with ``review`` recorded for ``url`` and the ``approved`` summary brought up to date."""
    updated = dataclasses.replace(config, approvals={**config.approvals, url: review})
    return with_summary(updated)


def with_summary(config: EnvironmentConfig) -> EnvironmentConfig:
    """``config`` with ``approved`` = every listed URL has a current approval (a summary for lists)."""
    summary = bool(config.fhir_base_urls) and all(config.url_approved(u) for u in config.fhir_base_urls)
    return dataclasses.replace(config, approved=summary)


def seeded_approvals(config: EnvironmentConfig, *, at: datetime, by_name: str = "local-seed") -> EnvironmentConfig:
    """Every URL of ``config`` approved by ``by_name``: for local seeding and tests only (the portal records
    real approvals through the analyst's Epic sign-in)."""
    for url in config.fhir_base_urls:
        config = dataclasses.replace(config, approvals={**config.approvals, url: approval(
            config, url, by_id=by_name, by_name=by_name, at=at, fhir_user=f"{url}/Practitioner/{by_name}")})
    return with_summary(config)


# ---- the analyst's Epic sign-in and decision ------------------------------------------------------------------
APPROVAL_CALLBACK_PATH = "/api/portal/approvals/callback"
APPROVAL_SCOPE = "openid fhirUser"
SIGNIN_SECONDS = 600
PROOF_SECONDS = 1800
MAX_COMMENT = 1000


class ApprovalFailed(Exception):
    """The Epic sign-in or the decision failed; ``reason`` says why and what to do (safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def approval_callback_url(public_base_url: str) -> str:
    """The ``redirect_uri`` of the analyst's standalone launch (register it for the client in Epic)."""
    return public_base_url.rstrip("/") + APPROVAL_CALLBACK_PATH


def approval_refusal(error: OAuthError, *, url: str, client_id: str, redirect_uri: str) -> str:
    """Why Epic refused the approver's sign-in, in Epic's own words, and what to do about it."""
    said = f"Epic refused the sign-in. {error.quoted()}"
    fixes = {
        "audience": f"Epic accepts only its own FHIR base URL as 'aud': the URL being approved ({url}) must be "
                    "exactly this Epic environment's FHIR base URL (scheme, host, path with its R4 suffix, no "
                    "trailing slash). Correct it on the environment's page, then approve again.",
        "redirect_uri": f"Register {redirect_uri} as a redirect URI of client {client_id} in Epic, then start the "
                        "approval again.",
        "scope": f"Grant client {client_id} the scopes openid and fhirUser in Epic, then start the approval again.",
        "client": f"The client ID {client_id} is not registered or not activated in this Epic environment: check "
                  "the environment's Epic client ID, or ask Epic to activate it.",
        "denied": "Your Epic user declined, or lacks the security to sign in to this app.",
        "launch_used": "The sign-in expired or was already used. Start the approval again.",
    }
    fix = fixes.get(error.cause, "An OAuth2 error here usually means our client's keys (JWKS URL) or redirect URI "
                                 "are not set up in Epic yet, or your Epic user lacks the security to sign in to "
                                 "this app.")
    return f"{said} {fix}"


def assigned_to(config: EnvironmentConfig, url: str, principal: Any) -> bool:
    """Whether ``principal`` is the approver named for ``url`` (sign-in names compare case-insensitively)."""
    named = config.approvers.get(url)
    return bool(named) and named.lower() == principal.name.lower()


def url_status(config: EnvironmentConfig, url: str) -> str:
    """``approved``, ``changed`` (approved, then the URL's registration changed), ``sent_back`` or ``pending``."""
    review = config.approvals.get(url)
    if review is None:
        return "pending"
    if review.fingerprint != config.approval_fingerprint(url):
        return "changed"
    return review.status


class ApprovalService:
    """The approval of FHIR base URLs (docs/portal.md "Approval"), SMART App Launch *standalone* launch:

    1. :meth:`begin`: the approver named for the URL asks to sign in; discovery of the URL; state + PKCE S256 +
       nonce stored (10 minutes, bound to this approver); the browser goes to Epic's authorize endpoint with
       ``scope=openid fhirUser``, ``aud`` = the URL, and no ``launch`` (standalone).
    2. :meth:`complete` (``GET /api/portal/approvals/callback``): state checked and consumed; code exchanged with
       our ``private_key_jwt`` (proves our client registration and keys); id_token verified; its ``fhirUser`` kept
       in a sign-in proof (30 minutes). Nothing else from Epic is kept; the access token is dropped.
    3. :meth:`approve` with that proof, or :meth:`send_back` with a comment (no Epic sign-in needed).
    """

    def __init__(self, *, admin: Any, operations: Any, discovery: Any, keys: Any, http: Any, id_tokens: Any,
                 clock: Any, wall_clock: Any, public_base_url: str) -> None:
        self._admin = admin
        self._ops = operations
        self._discovery = discovery
        self._keys = keys
        self._http = http
        self._id_tokens = id_tokens
        self._clock = clock
        self._wall = wall_clock
        self._public = public_base_url.rstrip("/")

    def assignments(self, principal: Any) -> list[tuple[EnvironmentConfig, str]]:
        """Every (environment, URL) whose named approver is ``principal``."""
        return [(env, url) for env in self._admin.list() for url in env.fhir_base_urls
                if assigned_to(env, url, principal)]

    def _assigned(self, environment_id: str, url: str, principal: Any) -> EnvironmentConfig:
        return self._assigned_in(self._admin.get(environment_id), url, principal)

    @staticmethod
    def _assigned_in(config: EnvironmentConfig, url: str, principal: Any) -> EnvironmentConfig:
        environment_id = config.id
        if url not in config.fhir_base_urls:
            raise ApprovalFailed(f"Environment {environment_id} does not list {url}.")
        if not assigned_to(config, url, principal):
            from lib.config.access import Forbidden

            raise Forbidden(f"You ({principal.name}) are not the approver named for {url}; "
                            f"{config.approvers.get(url) or 'nobody'} is. Ask an admin to name you.")
        return config

    def begin(self, environment_id: str, url: str, principal: Any) -> str:
        """Step 1: the URL of Epic's authorize endpoint for the approver's sign-in.

        Raises:
            Forbidden: not the approver named for the URL. ApprovalFailed: URL unknown or discovery failed.
        """
        from lib.smart.authorize import AuthorizeRequest, new_nonce, new_pkce, new_state
        from lib.smart.errors import LaunchError

        config = self._assigned(environment_id, url, principal)
        try:
            smart = self._discovery.discover(url, config.epic_client_id)
        except LaunchError as exc:
            raise ApprovalFailed(f"Epic's SMART discovery of {url} failed ({exc.code}): {exc.admin_hint}") from exc
        pkce, state, nonce = new_pkce(), new_state(), new_nonce()
        self._ops.create(state, "approval-signin", {
            "environmentId": environment_id, "url": url, "userId": principal.user_id, "verifier": pkce.verifier,
            "nonce": nonce, "fingerprint": config.approval_fingerprint(url)},
            now=self._wall.now(), ttl_seconds=SIGNIN_SECONDS)
        request = AuthorizeRequest(endpoint=smart.authorization_endpoint, method="GET", params={
            "response_type": "code", "client_id": config.epic_client_id,
            "redirect_uri": approval_callback_url(self._public), "scope": APPROVAL_SCOPE, "state": state,
            "aud": url, "code_challenge": pkce.challenge, "code_challenge_method": pkce.method, "nonce": nonce})
        return request.redirect_url()

    def complete(self, query: dict[str, str], principal: Any) -> dict[str, Any]:
        """Step 2: finish the sign-in; returns the proof ``{"id", "environmentId", "url", "fhirUser"}``.

        Raises:
            ApprovalFailed: unknown/expired/foreign state, Epic's error, token or id_token refused.
        """
        from lib.smart.errors import LaunchError
        from lib.smart.token import exchange_code

        now = self._wall.now()
        pending = self._ops.get(query.get("state") or "", "approval-signin", now=now)
        if pending is None:
            raise ApprovalFailed("This Epic sign-in is unknown, expired (10 minutes) or already used. Start the "
                                 "approval again.")
        if pending["userId"] != principal.user_id:
            raise ApprovalFailed("This Epic sign-in was started by another portal user. Start it yourself.")
        if not self._ops.consume(pending):
            raise ApprovalFailed("This Epic sign-in was already used. Start the approval again.")
        config = self._assigned(pending["environmentId"], pending["url"], principal)
        if query.get("error"):
            raise ApprovalFailed(approval_refusal(OAuthError.read(query.get("error"), query.get("error_description")),
                                                  url=pending["url"], client_id=config.epic_client_id,
                                                  redirect_uri=approval_callback_url(self._public)))
        if config.approval_fingerprint(pending["url"]) != pending["fingerprint"]:
            raise ApprovalFailed("The environment changed during the sign-in. Start the approval again.")
        try:
            smart = self._discovery.discover(pending["url"], config.epic_client_id)
            tokens = exchange_code(self._http, token_endpoint=smart.token_endpoint, code=query.get("code") or "",
                                   redirect_uri=approval_callback_url(self._public),
                                   code_verifier=pending["verifier"], client_id=config.epic_client_id,
                                   keys=self._keys(config.kind), now=now, alg=config.client_assertion_alg)
            if not tokens.id_token:
                raise ApprovalFailed("Epic returned no id_token: grant the openid and fhirUser scopes to the app.")
            identity = self._id_tokens.verify(tokens.id_token, config=smart, client_id=config.epic_client_id,
                                              nonce=pending["nonce"], now=now)
        except LaunchError as exc:
            raise ApprovalFailed(f"The Epic sign-in could not be completed ({exc.code}): {exc.admin_hint}") from exc
        if not identity.fhir_user:
            raise ApprovalFailed("Epic's id_token has no fhirUser: grant the fhirUser scope to the app in Epic.")
        import secrets

        proof_id = secrets.token_urlsafe(24)
        body = {"environmentId": config.id, "url": pending["url"], "userId": principal.user_id,
                "fhirUser": identity.fhir_user, "fingerprint": pending["fingerprint"]}
        self._ops.create(proof_id, "approval-proof", body, now=now, ttl_seconds=PROOF_SECONDS)
        return {"id": proof_id, **body}

    def proof(self, proof_id: str, principal: Any) -> dict[str, Any] | None:
        """A sign-in proof of ``principal``, or ``None``."""
        found = self._ops.get(proof_id, "approval-proof", now=self._wall.now())
        return found if found and found["userId"] == principal.user_id else None

    def approve(self, environment_id: str, url: str, proof_id: str, principal: Any) -> EnvironmentConfig:
        """Step 3: approve ``url`` with the proof of a successful Epic sign-in against it.

        Raises:
            Forbidden: not the URL's approver. ApprovalFailed: no valid proof, or the URL changed since.
        """
        config = self._assigned(environment_id, url, principal)
        proof = self.proof(proof_id, principal)
        if proof is None or proof["environmentId"] != environment_id or proof["url"] != url:
            raise ApprovalFailed("Sign in to Epic against this FHIR base URL first (the sign-in proves the URL and "
                                 "our client registration); a sign-in counts for 30 minutes.")
        if proof["fingerprint"] != config.approval_fingerprint(url):
            raise ApprovalFailed("The URL's registration changed after your Epic sign-in. Sign in again.")
        self._ops.consume(proof)

        def approved(current: EnvironmentConfig) -> EnvironmentConfig:
            # Re-checked on the version written: an edit of the URL's registration in between voids the sign-in.
            self._assigned_in(current, url, principal)
            if proof["fingerprint"] != current.approval_fingerprint(url):
                raise ApprovalFailed("The URL's registration changed after your Epic sign-in. Sign in again.")
            review = approval(current, url, by_id=principal.user_id, by_name=principal.name, at=self._clock.now(),
                              fhir_user=proof["fhirUser"])
            return with_review(current, url, review)

        return self._admin.modify(environment_id, approved, principal, action="approval.approve",
                                  summary=f"approved {url} (Epic user {proof['fhirUser']})")

    def send_back(self, environment_id: str, url: str, comment: str, principal: Any) -> EnvironmentConfig:
        """Send ``url`` back to the admin with ``comment`` (the URL stays unlaunchable).

        Raises:
            Forbidden: not the URL's approver. ApprovalFailed: no comment, or too long.
        """
        config = self._assigned(environment_id, url, principal)
        comment = comment.strip()
        if not comment or len(comment) > MAX_COMMENT:
            raise ApprovalFailed(f"Say what the admin must change (1 to {MAX_COMMENT} characters).")
        del config

        def returned(current: EnvironmentConfig) -> EnvironmentConfig:
            self._assigned_in(current, url, principal)
            review = sent_back(current, url, by_id=principal.user_id, by_name=principal.name, at=self._clock.now(),
                               comment=comment)
            return with_review(current, url, review)

        return self._admin.modify(environment_id, returned, principal, action="approval.send_back",
                                  summary=f"sent back {url}: {comment}")
