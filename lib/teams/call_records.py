"""Graph call records (v1.0, application permission ``CallRecords.Read.All``): find a meeting's records (one per
call) and read each with its sessions and segments (GRAPH ``api/callrecords-cloudcommunications-list-callrecords.md``,
``api/callrecords-callrecord-get.md``). A record exists only after the meeting ended (often minutes, up to
hours later); the list is filtered on a window around the call's start (``startDateTime`` is one of the two
filters
Graph supports: the meeting's organizer need not have joined, so a participant filter could miss it) and
matched on ``joinWebUrl``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lib.ehr.writeback import retry_after_seconds
from lib.smart.transport import TransportError, json_or_none
from lib.teams.graph import GraphCaller

MAX_PAGES = 20


@dataclass(frozen=True)
class RecordSummary:
    """One call record as the list gives it: its ID and when the call started and ended (``None``: not given)."""

    id: str
    start_utc: datetime | None
    end_utc: datetime | None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class CallRecordsError(Exception):
    """A call-records call failed: ``transient`` (429 with ``retry_after``, 5xx, no answer) or not; ``reason``
    is safe to log."""

    def __init__(self, reason: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after


class CallRecordsClient(GraphCaller):
    """Finds and reads call records with the app-only token.

    Args:
        base_url: ``Settings.graph_base_url`` (v1.0).
        tokens: app-only token source.
        http: outbound HTTP client.
    """


    def _get(self, url: str, params: dict[str, str] | None = None) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {self._tokens.token()}", "Accept": "application/json"}
        try:
            response = self._http.get(url, params=params, headers=headers)
        except TransportError as exc:
            raise CallRecordsError(f"graph_{exc.kind}", transient=True) from exc
        if response.status_code == 404:
            return None
        if response.status_code == 429 or response.status_code >= 500:
            raise CallRecordsError(f"graph_http_{response.status_code}", transient=True,
                                   retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        if response.status_code != 200:
            raise CallRecordsError(f"graph_http_{response.status_code}", transient=False)
        doc = json_or_none(response)
        if not isinstance(doc, dict):
            raise CallRecordsError("graph_bad_answer", transient=True)
        return doc

    def find_all(self, *, since: datetime, until: datetime, join_url: str) -> list[RecordSummary]:
        """Every call record of meeting ``join_url`` that started between ``since`` and ``until`` (one per call
        of the meeting: everyone left and came back later is a second call), oldest first; empty when there is
        none yet.

        Raises:
            CallRecordsError.
        """
        def stamp(at: datetime) -> str:
            return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        params: dict[str, str] | None = {
            "$filter": f"startDateTime ge {stamp(since)} and startDateTime le {stamp(until)}"}
        url = f"{self._base}/communications/callRecords"
        found: dict[str, RecordSummary] = {}
        for _ in range(MAX_PAGES):
            doc = self._get(url, params)
            if doc is None:
                break
            for record in doc.get("value") or []:
                if isinstance(record, dict) and record.get("joinWebUrl") == join_url and record.get("id"):
                    found[str(record["id"])] = RecordSummary(str(record["id"]), _instant(record.get("startDateTime")),
                                                             _instant(record.get("endDateTime")))
            link = doc.get("@odata.nextLink")
            if not isinstance(link, str) or urllib.parse.urlsplit(link).netloc != urllib.parse.urlsplit(url).netloc:
                break
            url, params = link, None
        return sorted(found.values(), key=lambda r: (r.start_utc or datetime.max.replace(tzinfo=UTC), r.id))

    def get(self, record_id: str) -> dict[str, Any] | None:
        """The record with its sessions and segments, or ``None`` when it is gone.

        Raises:
            CallRecordsError.
        """
        return self._get(f"{self._base}/communications/callRecords/{urllib.parse.quote(record_id, safe='')}",
                         {"$expand": "sessions($expand=segments)"})
