"""SMART launch states (container ``launch_states``, partition key ``/id`` = the ``state`` value).

One document per authorize request, written before the browser is sent to the EHR and consumed by the
callback: it keeps the PKCE verifier, the nonce and the environment *server-side*, and binds the callback
to the browser that started it (SMART App Launch STU 2.2, app-launch.html "state": unpredictable, tied to
the user's session, validated on every redirect). Single use: the callback *takes* it in one round trip, a
conditional partial update (Cosmos DB patch with a filter predicate) that marks it ``used`` only when it is
unused and bound to this browser, and returns it; a second use, a concurrent one or another browser's gets
HTTP 412 and nothing changes (a cross-site request cannot burn the real browser's launch). ``ttl`` 600 s
removes used and unused states alike; the expiry is also checked in code because the local
Cosmos-compatible server does not enforce TTL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from azure.cosmos import exceptions as cosmos_errors

from lib.models import iso, parse_iso
from lib.store.cosmos import CosmosStore, if_match, read_or_none, translated_errors
from lib.store.errors import ConcurrencyConflict

LAUNCH_STATE_TTL_SECONDS = 600
LaunchKindName = Literal["provider", "patient"]
TakeRefusal = Literal["unknown", "used", "other_browser"]
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class LaunchState:
    """What the callback needs to finish one launch. No token, no PHI.

    Attributes:
        state: the OAuth ``state`` (document ID; 256 random bits).
        environment_id: the environment whose approved FHIR base URL matched ``iss``.
        iss: the FHIR base URL of the launch (the callback never takes another one).
        code_verifier: PKCE verifier (sent only to that EHR's token endpoint).
        nonce: OpenID Connect nonce expected in the id_token.
        kind: ``provider`` or ``patient``.
        browser_binding: SHA-256 hex of the launch cookie value set on the browser.
        session_hint: ``sessionId`` from the launch URL (Epic ``%CSN%``): a hint only, never trusted.
        department_hint: ``departmentId`` from the launch URL: a hint only.
        view: ``status`` when the launch URL asked for the visit's live status page (``view=status``) instead
            of the meeting; ``None`` otherwise.
        created_utc: when the launch began.
        ttl: seconds the state lives.
        device_test: the launch URL asked for the device test (``mode=devicetest``, the device-test record): the
            patient lands on the join page's device test.
    """

    state: str
    environment_id: str
    iss: str
    code_verifier: str
    nonce: str
    kind: LaunchKindName
    browser_binding: str
    session_hint: str | None
    department_hint: str | None
    created_utc: datetime
    ttl: int = LAUNCH_STATE_TTL_SECONDS
    etag: str | None = None
    device_test: bool = False
    view: str | None = None

    def expired(self, now: datetime) -> bool:
        """Whether ``now`` is at or past ``created_utc + ttl``."""
        return now >= self.created_utc + timedelta(seconds=self.ttl)

    def to_doc(self) -> dict[str, Any]:
        """The Cosmos document."""
        return {
            "id": self.state,
            "environmentId": self.environment_id,
            "iss": self.iss,
            "code_verifier": self.code_verifier,
            "nonce": self.nonce,
            "kind": self.kind,
            "browser_binding": self.browser_binding,
            "session_hint": self.session_hint,
            "department_hint": self.department_hint,
            "created_utc": iso(self.created_utc),
            "ttl": self.ttl,
            "device_test": self.device_test,
            "view": self.view,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> LaunchState:
        """Build from a stored document, keeping its ``_etag``."""
        return cls(
            state=doc["id"],
            environment_id=doc["environmentId"],
            iss=doc["iss"],
            code_verifier=doc["code_verifier"],
            nonce=doc["nonce"],
            kind=doc["kind"],
            browser_binding=doc["browser_binding"],
            session_hint=doc.get("session_hint"),
            department_hint=doc.get("department_hint"),
            created_utc=parse_iso(doc["created_utc"]),  # type: ignore[arg-type]
            ttl=int(doc.get("ttl", LAUNCH_STATE_TTL_SECONDS)),
            etag=doc.get("_etag"),
            device_test=bool(doc.get("device_test", False)),
            view=doc.get("view"),
        )


class LaunchStateRepository:
    """Create, read and consume (delete once) :class:`LaunchState` documents."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("launch_states")

    def create(self, state: LaunchState) -> None:
        """Store a new launch state.

        Raises:
            AlreadyExists: the ``state`` value collided (practically impossible with 256 random bits).
        """
        with translated_errors():
            self._container.create_item(state.to_doc())

    def get(self, state: str) -> LaunchState | None:
        """The launch state, or ``None`` when unknown, already used or purged."""
        if not state or len(state) > 128:
            return None
        doc = read_or_none(self._container, state, state)
        # The container also holds sign-in states and used-link claims (lib/store/signin_states.py).
        return LaunchState.from_doc(doc) if doc and "type" not in doc and not doc.get("used") else None

    def take(self, state: str, browser_binding: str, *, now: datetime) -> LaunchState | TakeRefusal:
        """Mark the launch state ``state`` used and return it, in one round trip, when it is unused and bound
        to ``browser_binding`` (:func:`lib.visits.launch.browser_binding` of the browser's cookie; ``""`` when
        the browser sent none). The caller still checks the returned state's expiry.

        Returns the state, or why not: ``unknown`` (no such state, or expired at ``now``), ``used`` (taken
        before, or by a concurrent callback), ``other_browser`` (it belongs to another browser; it stays
        unused).

        Raises:
            StoreUnavailable: the store is down.
        """
        if not state or len(state) > 128:
            return "unknown"
        if _HEX64.fullmatch(browser_binding):
            predicate = (f"FROM c WHERE c.browser_binding = '{browser_binding}' "
                         "AND NOT IS_DEFINED(c.used) AND NOT IS_DEFINED(c.type)")
            try:
                with translated_errors():
                    doc = self._container.patch_item(
                        item=state, partition_key=state, filter_predicate=predicate,
                        patch_operations=[{"op": "add", "path": "/used", "value": True}])
                return LaunchState.from_doc(doc)
            except cosmos_errors.CosmosResourceNotFoundError:
                return "unknown"
            except ConcurrencyConflict:
                pass
        current = read_or_none(self._container, state, state)  # only on a refusal: why was it refused?
        if current is None or "type" in current or LaunchState.from_doc(current).expired(now):
            return "unknown"
        return "used" if current.get("used") else "other_browser"

    def consume(self, state: LaunchState) -> bool:
        """Delete ``state`` if it is unchanged since it was read (``If-Match``).

        Returns:
            ``True`` for the one caller that deleted it; ``False`` when it was already gone or changed
            (a replayed or concurrent callback).
        """
        try:
            with translated_errors():
                self._container.delete_item(item=state.state, partition_key=state.state, **if_match(state.etag))
            return True
        except (cosmos_errors.CosmosResourceNotFoundError, ConcurrencyConflict):
            return False
