"""Pending Microsoft 365 sign-ins of clinicians and used encrypted launch links, both single use, kept in the
``launch_states`` container (partition key ``/id``) beside the SMART launch states.

- Sign-in state: ``id`` = ``signin|{state}`` (the OAuth ``state`` sent to Entra ID). Holds the MSAL auth-code
  flow (PKCE verifier, nonce), the environment, the clinician's EHR user ID, the appointment key and the
  launch's browser binding; no token, no PHI. Consumed with ``If-Match`` by the sign-in callback; ``ttl`` 600 s
  (also checked in code: the local Cosmos-compatible server does not enforce TTL).
- Used encrypted link: ``id`` = ``link|{sha256}`` created with ``create_item`` so that exactly one launch can
  claim a link (a replay gets HTTP 409 -> ``False``); ``ttl`` outlives the link's freshness window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.cosmos import exceptions as cosmos_errors

from lib.models import iso, parse_iso
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import AlreadyExists, ConcurrencyConflict

SIGNIN_STATE_TTL_SECONDS = 600
_SIGNIN_PREFIX = "signin|"
_LINK_PREFIX = "link|"


@dataclass(frozen=True)
class SignInState:
    """One pending clinician sign-in.

    Attributes:
        state: the OAuth ``state`` sent to Entra ID (256 random bits).
        environment_id, ehr_user_id: whose mapping the sign-in makes.
        appointment_key: the visit the clinician was launching into.
        department: the launch URL's ``departmentId`` hint (organizer fallback only).
        browser_binding: SHA-256 hex of the launch cookie (the same browser must come back).
        attempt: the SMART launch's state value, reused as the ``connected`` event's attempt.
        flow: MSAL's auth-code flow dict (``state``, ``code_verifier``, ``nonce``, ``redirect_uri``...).
        created_utc: when the sign-in began.
    """

    state: str
    environment_id: str
    ehr_user_id: str
    appointment_key: str
    department: str | None
    browser_binding: str
    attempt: str
    flow: dict[str, Any] = field(repr=False)
    created_utc: datetime = field(default_factory=lambda: datetime.min)
    ttl: int = SIGNIN_STATE_TTL_SECONDS
    etag: str | None = None

    def expired(self, now: datetime) -> bool:
        """Whether ``now`` is at or past ``created_utc + ttl``."""
        return now >= self.created_utc + timedelta(seconds=self.ttl)

    def to_doc(self) -> dict[str, Any]:
        """The Cosmos document."""
        return {
            "id": _SIGNIN_PREFIX + self.state,
            "type": "signin",
            "environmentId": self.environment_id,
            "ehrUserId": self.ehr_user_id,
            "appointmentKey": self.appointment_key,
            "department": self.department,
            "browser_binding": self.browser_binding,
            "attempt": self.attempt,
            "flow": self.flow,
            "created_utc": iso(self.created_utc),
            "ttl": self.ttl,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SignInState:
        """Build from a stored document, keeping its ``_etag``."""
        return cls(
            state=doc["id"][len(_SIGNIN_PREFIX):],
            environment_id=doc["environmentId"],
            ehr_user_id=doc["ehrUserId"],
            appointment_key=doc["appointmentKey"],
            department=doc.get("department"),
            browser_binding=doc["browser_binding"],
            attempt=doc["attempt"],
            flow=dict(doc.get("flow") or {}),
            created_utc=parse_iso(doc["created_utc"]),  # type: ignore[arg-type]
            ttl=int(doc.get("ttl", SIGNIN_STATE_TTL_SECONDS)),
            etag=doc.get("_etag"),
        )


class SignInStateRepository:
    """Create, read and consume (delete once) :class:`SignInState` documents."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("launch_states")

    def create(self, state: SignInState) -> None:
        """Store a new pending sign-in."""
        with translated_errors():
            self._container.create_item(state.to_doc())

    def get(self, state: str) -> SignInState | None:
        """The pending sign-in, or ``None`` when unknown, used or purged."""
        if not state or len(state) > 128:
            return None
        key = _SIGNIN_PREFIX + state
        doc = read_or_none(self._container, key, key)
        return SignInState.from_doc(doc) if doc and doc.get("type") == "signin" else None

    def consume(self, state: SignInState) -> bool:
        """Delete ``state`` if unchanged since read (``If-Match``); ``False`` for a replay or a lost race."""
        key = _SIGNIN_PREFIX + state.state
        try:
            with translated_errors():
                self._container.delete_item(item=key, partition_key=key, **if_match(state.etag))
            return True
        except (cosmos_errors.CosmosResourceNotFoundError, ConcurrencyConflict):
            return False


class UsedLinkRepository:
    """Single-use claims of encrypted launch links (keyed by a hash of the link)."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("launch_states")

    def claim(self, digest: str, *, expires: datetime, now: datetime) -> bool:
        """Record the link ``digest`` (hex SHA-256) until ``expires``; ``False`` when it was already claimed.

        Raises:
            StoreUnavailable: Cosmos DB cannot be reached or throttles.
        """
        ttl = max(60, int((expires - now).total_seconds()) + 60)
        try:
            with translated_errors():
                self._container.create_item({"id": _LINK_PREFIX + digest, "type": "link", "expires": iso(expires),
                                             "ttl": ttl})
        except AlreadyExists:
            return False
        return True
