"""ACS phone numbers stand-in: the REST contract ``azure-communication-phonenumbers`` 1.4.0 uses (api-version
``2025-06-01``), served by the ACS stand-in (``local.standins.acs_sms``) on the same endpoint and HMAC
authentication.

Contract (from the SDK: ``_generated/operations/_operations.py``, ``models/_models.py``; azure-core
``LROBasePolling`` with ``Operation-Location``):

- ``POST /availablePhoneNumbers/countries/{countryCode}/:search`` body ``{"phoneNumberType": "geographic" |
  "tollFree", "assignmentType": "person" | "application", "capabilities": {"calling", "sms"}, "areaCode"?,
  "quantity"?}`` -> 202, headers ``Operation-Location`` (the operation), ``Location`` (the search result),
  ``operation-id``, ``search-id``. Toll-free numbers exist for US, CA and PR only; quantity 1..10.
- ``GET /phoneNumbers/operations/{operationId}`` -> ``{"id", "operationType", "status": "notStarted" | "running" |
  "succeeded" | "failed", "resourceLocation", "createdDateTime", "lastActionDateTime", "error"?}``.
- ``GET /availablePhoneNumbers/searchResults/{searchId}`` -> ``PhoneNumberSearchResult`` (``searchId``,
  ``phoneNumbers``, ``phoneNumberType``, ``assignmentType``, ``capabilities``, ``cost``, ``searchExpiresBy``,
  ``isAgreementToNotResellRequired``); 404 when unknown.
- ``POST /availablePhoneNumbers/:purchase`` body ``{"searchId", "agreeToNotResell"?}`` -> 202 with
  ``Operation-Location``, ``operation-id``, ``purchase-id``; an unknown or expired search 404/400, a search
  already purchased 409.
- ``GET /phoneNumbers`` -> ``{"phoneNumbers": [PurchasedPhoneNumber], "nextLink"?}``.

Numbers are fictional (``+1 800 555 01xx``, ``+1 {area} 555 01xx``). A search completes after
``search_seconds``; a purchase after ``purchase_seconds`` (default 3: "a purchase that takes a while"); the next
purchase can be scripted to fail (``POST /_standin/phone-numbers/behaviour {"fail_next_purchase": "reason"}``).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.standins.server import Request, Response, StandinApp, json_response

API_VERSIONS = {"2025-06-01", "2025-04-01", "2025-02-11", "2024-03-01-preview", "2022-12-01"}
TOLL_FREE_COUNTRIES = {"US", "CA", "PR"}
GEOGRAPHIC_COUNTRIES = {"US", "CA", "GB"}
SEARCH_TTL = 16 * 60  # seconds a search result is held (ACS: 16 minutes)


@dataclass
class PhoneNumbersState:
    """Mutable state, guarded by ``lock``."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    searches: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    purchased: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_suffix: int = 10
    search_seconds: float = 0.5
    purchase_seconds: float = 3.0
    fail_next_purchase: str | None = None

    def reset(self) -> None:
        """Forget searches, operations and scripted behaviour (purchased numbers stay: they were bought)."""
        with self.lock:
            self.searches.clear()
            self.operations.clear()
            self.search_seconds, self.purchase_seconds, self.fail_next_purchase = 0.5, 3.0, None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


def add_routes(app: StandinApp, authenticate: Callable[[Request], Response | None]) -> PhoneNumbersState:
    """Add the phone numbers routes to the ACS stand-in ``app`` (``authenticate``: its HMAC check)."""
    st = PhoneNumbersState()
    app.on_reset(st.reset)

    def checked(req: Request) -> Response | None:
        denied = authenticate(req)
        if denied is not None:
            return denied
        version = req.arg("api-version")
        if version not in API_VERSIONS:
            return _error(400, "UnsupportedApiVersion", f"api-version {version!r} is not supported")
        return None

    def url(path: str, req: Request) -> str:
        return f"{app.base_url}{path}?api-version={req.arg('api-version')}"

    def operation_view(op: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        status = "running" if now < op["done_at"] else op["final"]
        body = {"id": op["id"], "operationType": op["type"], "status": status,
                "createdDateTime": op["created"], "lastActionDateTime": _iso(_now())}
        if status == "succeeded" and op.get("resource"):
            body["resourceLocation"] = op["resource"]
        if status == "failed":
            body["error"] = {"code": "PurchaseFailed", "message": op["reason"]}
        if status == "succeeded" and op["type"] == "purchase" and not op.get("applied"):
            with st.lock:
                op["applied"] = True
                search = st.searches[op["search_id"]]
                for number in search["phoneNumbers"]:
                    st.purchased[number] = {
                        "id": number.lstrip("+"), "phoneNumber": number, "countryCode": search["countryCode"],
                        "phoneNumberType": search["phoneNumberType"], "capabilities": search["capabilities"],
                        "assignmentType": search["assignmentType"], "purchaseDate": _iso(_now()),
                        "cost": search["cost"]}
        return body

    @app.route("POST", r"/availablePhoneNumbers/countries/([A-Z]{2})/(?::|%3[Aa])search")
    def _search(req: Request, m: re.Match[str]) -> Response:
        if (denied := checked(req)) is not None:
            return denied
        body = req.json()
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "A JSON object body is required.")
        country, number_type = m.group(1), body.get("phoneNumberType")
        if number_type not in ("geographic", "tollFree"):
            return _error(400, "BadRequest", "phoneNumberType must be geographic or tollFree.")
        if body.get("assignmentType") not in ("person", "application"):
            return _error(400, "BadRequest", "assignmentType must be person or application.")
        caps = body.get("capabilities")
        allowed = {"none", "inbound", "outbound", "inbound+outbound"}
        if not isinstance(caps, dict) or caps.get("calling") not in allowed or caps.get("sms") not in allowed:
            return _error(400, "BadRequest", "capabilities.calling and capabilities.sms are required.")
        countries = TOLL_FREE_COUNTRIES if number_type == "tollFree" else GEOGRAPHIC_COUNTRIES
        if country not in countries:
            return _error(400, "BadRequest", f"{number_type} numbers are not offered in {country}.")
        quantity = body.get("quantity", 1)
        if not isinstance(quantity, int) or not 1 <= quantity <= 10:
            return _error(400, "BadRequest", "quantity must be 1 to 10.")
        area = body.get("areaCode")
        if area is not None and not (isinstance(area, str) and re.fullmatch(r"[2-9]\d\d", area)):
            return _error(400, "BadRequest", "areaCode must be three digits.")
        with st.lock:
            numbers = []
            for _ in range(quantity):
                suffix = st.next_suffix
                st.next_suffix = 10 + (st.next_suffix - 9) % 90
                prefix = "800" if number_type == "tollFree" else (area or "206")
                numbers.append(f"+1{prefix}55501{suffix:02d}")
            search_id, op_id = str(uuid.uuid4()), "search_" + uuid.uuid4().hex
            st.searches[search_id] = {
                "searchId": search_id, "phoneNumbers": numbers, "phoneNumberType": number_type,
                "assignmentType": body["assignmentType"], "capabilities": caps, "countryCode": country,
                "cost": {"amount": 2.0 if number_type == "tollFree" else 1.0, "currencyCode": "USD",
                         "billingFrequency": "monthly"},
                "searchExpiresBy": _iso(_now() + dt.timedelta(seconds=SEARCH_TTL)),
                "isAgreementToNotResellRequired": False, "expires": time.time() + SEARCH_TTL, "purchased": False}
            st.operations[op_id] = {"id": op_id, "type": "search", "created": _iso(_now()),
                                    "done_at": time.time() + st.search_seconds, "final": "succeeded",
                                    "resource": url(f"/availablePhoneNumbers/searchResults/{search_id}", req)}
        return Response(202, b"{}", {"Operation-Location": url(f"/phoneNumbers/operations/{op_id}", req),
                              "Location": url(f"/availablePhoneNumbers/searchResults/{search_id}", req),
                              "operation-id": op_id, "search-id": search_id, "Content-Type": "application/json",
                              "Retry-After": "1"})

    @app.route("GET", r"/availablePhoneNumbers/searchResults/([0-9a-f-]{36})")
    def _search_result(req: Request, m: re.Match[str]) -> Response:
        if (denied := checked(req)) is not None:
            return denied
        with st.lock:
            search = st.searches.get(m.group(1))
        if search is None:
            return _error(404, "NotFound", "Search not found.")
        return json_response({k: v for k, v in search.items() if k not in ("expires", "purchased", "countryCode")})

    @app.route("GET", r"/phoneNumbers/operations/([A-Za-z0-9_]+)")
    def _operation(req: Request, m: re.Match[str]) -> Response:
        if (denied := checked(req)) is not None:
            return denied
        with st.lock:
            op = st.operations.get(m.group(1))
        if op is None:
            return _error(404, "NotFound", "Operation not found.")
        return json_response(operation_view(op), headers={"Retry-After": "1"})

    @app.route("POST", r"/availablePhoneNumbers/(?::|%3[Aa])purchase")
    def _purchase(req: Request, m: re.Match[str]) -> Response:
        if (denied := checked(req)) is not None:
            return denied
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("searchId"), str):
            return _error(400, "BadRequest", "searchId is required.")
        with st.lock:
            search = st.searches.get(body["searchId"])
            if search is None:
                return _error(404, "NotFound", "Search not found.")
            if search["expires"] < time.time():
                return _error(400, "SearchExpired", "The search has expired; search again.")
            if search["purchased"]:
                return _error(409, "Conflict", "This search was already purchased.")
            search["purchased"] = True
            op_id, purchase_id = "purchase_" + uuid.uuid4().hex, str(uuid.uuid4())
            reason, st.fail_next_purchase = st.fail_next_purchase, None
            st.operations[op_id] = {"id": op_id, "type": "purchase", "created": _iso(_now()),
                                    "done_at": time.time() + st.purchase_seconds,
                                    "final": "failed" if reason else "succeeded", "reason": reason,
                                    "search_id": search["searchId"]}
        return Response(202, b"{}", {"Operation-Location": url(f"/phoneNumbers/operations/{op_id}", req),
                              "operation-id": op_id, "purchase-id": purchase_id,
                              "Content-Type": "application/json", "Retry-After": "1"})

    @app.route("GET", r"/phoneNumbers")
    def _purchased(req: Request, m: re.Match[str]) -> Response:
        if (denied := checked(req)) is not None:
            return denied
        with st.lock:
            return json_response({"phoneNumbers": list(st.purchased.values())})

    @app.route(("GET", "POST"), r"/_standin/phone-numbers/behaviour")
    def _behaviour(req: Request, m: re.Match[str]) -> Response:
        if req.method == "POST":
            body = req.json()
            if not isinstance(body, dict):
                return json_response({"error": "JSON object expected"}, 400)
            with st.lock:
                if "search_seconds" in body:
                    st.search_seconds = float(body["search_seconds"])
                if "purchase_seconds" in body:
                    st.purchase_seconds = float(body["purchase_seconds"])
                if "fail_next_purchase" in body:
                    st.fail_next_purchase = body["fail_next_purchase"] or None
        with st.lock:
            return json_response({"search_seconds": st.search_seconds, "purchase_seconds": st.purchase_seconds,
                                  "fail_next_purchase": st.fail_next_purchase, "purchased": sorted(st.purchased)})

    return st
