"""Generating the SMS sender number through the ACS phone numbers API (``azure-communication-phonenumbers``), and
linking a number to environments (docs/portal.md "SMS").

1. :meth:`PhoneNumberService.search`: ``begin_search_available_phone_numbers`` (toll-free by default, SMS
   inbound+outbound, application assignment); searches finish in seconds, so this waits for the result (the
   numbers found, their monthly cost, when the offer expires).
2. :meth:`PhoneNumberService.purchase`: ``begin_purchase_phone_numbers(search_id)``: a long-running operation
   (up to about two minutes in Azure). Its continuation token is kept in ``portal_operations``; the portal shows
   progress by asking :meth:`PhoneNumberService.progress`, which resumes the operation from the token and waits
   a moment for news, so no request blocks for the whole purchase.
3. :meth:`PhoneNumberService.link`: the environment's SMS sender becomes one of the numbers we own.

Toll-free numbers need toll-free verification before they can send at volume (docs/sms.md): the portal reminds
the admin for every toll-free sender.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PURCHASE_RECORD = "phone-purchase"
SEARCH_RECORD = "phone-search"
SEARCH_TTL = 16 * 60  # ACS holds a search's numbers 16 minutes
PURCHASE_TTL = 24 * 3600
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class PhoneNumberError(Exception):
    """A phone-number action failed: ``status`` (HTTP), ``code``, ``reason`` (safe to show)."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


class SearchBody(BaseModel):
    """Body of ``POST /api/config/phone-numbers/searches``."""

    model_config = ConfigDict(extra="forbid")
    country: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    numberType: Literal["tollFree", "geographic"] = "tollFree"
    areaCode: str | None = Field(default=None, pattern=r"^[2-9]\d\d$")


class PurchaseBody(BaseModel):
    """Body of ``POST /api/config/phone-numbers/purchases``."""

    model_config = ConfigDict(extra="forbid")
    searchId: str = Field(min_length=1, max_length=64)
    consentToCosts: bool = False


class LinkBody(BaseModel):
    """Body of ``POST /api/config/environments/{id}/sms/sender``."""

    model_config = ConfigDict(extra="forbid")
    number: str = Field(pattern=r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class SearchResult:
    """A search: its ID, the numbers offered, monthly cost and when the offer ends."""

    search_id: str
    numbers: tuple[str, ...]
    cost: str
    expires: str
    number_type: str


def is_toll_free(number: str | None) -> bool:
    """Whether ``number`` is a North American toll-free number (needs toll-free verification)."""
    return bool(number) and re.match(r"^\+1(800|833|844|855|866|877|888)\d{7}$", number or "") is not None


class PhoneNumberService:
    """Searches, buys and links numbers.

    Args:
        client: a ``PhoneNumbersClient`` factory (``() -> client``), built on first use.
        operations: :class:`lib.config.operations.OperationStore`.
        admin: :class:`lib.config.environments.EnvironmentAdmin` (linking changes an environment).
        audit: :class:`lib.config.audit.AuditLog`.
        clock: wall clock.
        poll_seconds: LRO polling interval.
    """

    def __init__(self, *, client: Any, operations: Any, admin: Any, audit: Any, clock: Any,
                 poll_seconds: float = 1.0) -> None:
        self._client_factory = client
        self._client: Any = None
        self._ops = operations
        self._admin = admin
        self._audit = audit
        self._clock = clock
        self._poll = poll_seconds

    def _acs(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def search(self, body: dict[str, Any], actor: Any, *, timeout: float = 60.0) -> SearchResult:
        """Search for one number with SMS (and calling) capability.

        Raises:
            PhoneNumberError: ACS refused (the reason), did not finish in ``timeout``, or is not configured.
        """
        from azure.communication.phonenumbers import (
            PhoneNumberAssignmentType,
            PhoneNumberCapabilities,
            PhoneNumberCapabilityType,
        )

        caps = PhoneNumberCapabilities(calling=PhoneNumberCapabilityType.NONE,
                                       sms=PhoneNumberCapabilityType.INBOUND_OUTBOUND)
        with _acs_errors():
            poller = self._acs().begin_search_available_phone_numbers(
                body.get("country", "US"), body.get("numberType", "tollFree"), PhoneNumberAssignmentType.APPLICATION,
                caps, area_code=body.get("areaCode"), quantity=1, polling_interval=self._poll)
            result = poller.result(timeout=timeout)
        if result is None:
            raise PhoneNumberError(504, "SEARCH_TIMEOUT", "The number search did not finish in time; try again.")
        cost = f"{result.cost.amount:.2f} {result.cost.currency_code} {result.cost.billing_frequency}"
        found = SearchResult(search_id=result.search_id, numbers=tuple(result.phone_numbers), cost=cost,
                             expires=result.search_expires_by.isoformat() if result.search_expires_by else "",
                             number_type=str(result.phone_number_type))
        self._ops.create(found.search_id, SEARCH_RECORD, {"numbers": list(found.numbers), "cost": cost,
                                                          "searchedBy": actor.name},
                         now=self._clock.now(), ttl_seconds=SEARCH_TTL)
        return found

    def purchase(self, body: dict[str, Any], actor: Any) -> str:
        """Start buying the numbers of a search; returns the purchase record ID for :meth:`progress`.

        Raises:
            PhoneNumberError: no consent to the cost, or ACS refused the purchase (unknown/expired search...).
        """
        if not body.get("consentToCosts"):
            raise PhoneNumberError(422, "CONSENT_MISSING", "Confirm that the organization pays the number's "
                                                           "monthly cost before buying it.")
        search_id = body["searchId"]
        search = self._ops.get(search_id, SEARCH_RECORD, now=self._clock.now())
        if search is None:
            raise PhoneNumberError(404, "SEARCH_NOT_FOUND", "This number offer is unknown or expired (offers last "
                                                            "16 minutes). Search again.")
        numbers = tuple(search["numbers"])
        with _acs_errors():
            poller = self._acs().begin_purchase_phone_numbers(search_id, polling_interval=self._poll)
            token = poller.continuation_token()
        record_id = secrets.token_urlsafe(16)
        now = self._clock.now()
        self._ops.create(record_id, PURCHASE_RECORD, {"searchId": search_id, "numbers": list(numbers),
                                                      "token": token, "status": "running", "startedBy": actor.name},
                         now=now, ttl_seconds=PURCHASE_TTL)
        self._audit.record(environment_id="-", at=now, actor_id=actor.user_id, actor_name=actor.name,
                           action="phone_number.purchase", summary=f"started buying {', '.join(numbers)}",
                           before=None, after={"numbers": list(numbers), "searchId": search_id})
        return record_id

    def progress(self, record_id: str, *, wait: float = 1.5) -> dict[str, Any]:
        """The purchase's state: ``{"id", "status": running|succeeded|failed, "numbers", "error"?, "started"}``.

        Resumes the operation from its continuation token and waits up to ``wait`` seconds for it to end.

        Raises:
            PhoneNumberError: unknown record (404).
        """
        from azure.core.exceptions import HttpResponseError

        now = self._clock.now()
        record = self._ops.get(record_id, PURCHASE_RECORD, now=now)
        if record is None:
            raise PhoneNumberError(404, "NOT_FOUND", "No phone-number purchase with this ID.")
        if record["status"] == "running":
            try:
                poller = self._acs().begin_purchase_phone_numbers(
                    record["searchId"], continuation_token=record["token"], polling_interval=self._poll)
                poller.wait(timeout=wait)
                if poller.done():
                    poller.result()
                    record["status"] = "succeeded"
            except HttpResponseError as exc:
                record["status"], record["error"] = "failed", _acs_message(exc)
            if record["status"] != "running":
                from lib.store.errors import ConcurrencyConflict

                try:
                    record = self._ops.replace(record)
                except ConcurrencyConflict:
                    record = self._ops.get(record_id, PURCHASE_RECORD, now=now) or record
        return {"id": record["id"], "status": record["status"], "numbers": record["numbers"],
                "error": record.get("error"), "started": record["created"]}

    def owned(self) -> list[dict[str, Any]]:
        """The numbers our ACS resource owns, with their SMS capability and type."""
        with _acs_errors():
            numbers = list(self._acs().list_purchased_phone_numbers())
        return [{"number": n.phone_number, "type": str(n.phone_number_type), "sms": str(n.capabilities.sms),
                 "tollFree": is_toll_free(n.phone_number)} for n in numbers]

    def link(self, environment_id: str, number: str, actor: Any) -> Any:
        """Make ``number`` (one we own, SMS-capable) the environment's SMS sender.

        Raises:
            PhoneNumberError: not one of our numbers. ConfigurationRefused, NotFound: from the environment.
        """
        owned = {n["number"]: n for n in self.owned()}
        if number not in owned:
            raise PhoneNumberError(422, "NOT_OWNED", f"{number} is not a number of this ACS resource. Generate one "
                                                     "first, or buy it in the Azure portal.")
        if "outbound" not in owned[number]["sms"]:
            raise PhoneNumberError(422, "NO_SMS", f"{number} cannot send SMS.")
        return self._admin.modify(
            environment_id, lambda config: dataclasses.replace(config, sms=dataclasses.replace(config.sms,
                                                                                               sender=number)),
            actor, action="sms.link_number", summary=f"linked SMS sender {number}")


class _acs_errors:
    """Map ACS SDK failures to :class:`PhoneNumberError`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        from azure.core.exceptions import HttpResponseError, ServiceRequestError

        if exc is None:
            return False
        if isinstance(exc, PhoneNumberError):
            return False
        if isinstance(exc, HttpResponseError):
            status = exc.status_code or 502
            raise PhoneNumberError(404 if status == 404 else 422 if status in (400, 409) else 502, "ACS_REFUSED",
                                   _acs_message(exc)) from exc
        if isinstance(exc, ServiceRequestError | ConnectionError | TimeoutError):
            raise PhoneNumberError(503, "ACS_UNREACHABLE", "Azure Communication Services is not reachable; try "
                                                           "again in a moment.") from exc
        if isinstance(exc, ValueError):
            raise PhoneNumberError(503, "ACS_NOT_CONFIGURED", "ACS is not configured (ACS_CONNECTION_STRING or "
                                                              "ACS_ENDPOINT).") from exc
        return False


def _acs_message(exc: Any) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    return f"Azure Communication Services answered: {str(message).splitlines()[0][:300]}"
