"""Graph meeting attendance reports (v1.0, application permission ``OnlineMeetingArtifact.Read.All`` plus the
application access policy granted to the organizer): the reports of one online meeting and the attendance
records of each (GRAPH ``api/meetingattendancereport-list.md``, ``api/attendancerecord-list.md``).

A report exists only after the meeting ended (one per session of the meeting, at most the 50 newest are
listed); until then Graph answers 404 or an empty list, both read here as "not ready". Lists are paged with
``@odata.nextLink`` (followed only on Graph's own host). Only ``id``, ``identity`` (``id`` and ``@odata.type``)
and ``attendanceIntervals`` are read by the callers; names and e-mail addresses arrive but are never kept.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from lib.smart.transport import TransportError, json_or_none, retry_after_seconds
from lib.teams.graph import GraphCaller

#: Pages followed per list at most (50 reports; records of a visit fit in one or two pages).
MAX_PAGES = 20


class AttendanceReportsError(Exception):
    """An attendance-report call failed: ``transient`` (429 with ``retry_after``, 5xx, no answer) or not;
    ``not_permitted`` (403: the permission or the access policy is missing). ``reason`` is safe to log."""

    def __init__(self, reason: str, *, transient: bool, retry_after: float | None = None,
                 not_permitted: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after
        self.not_permitted = not_permitted


class AttendanceReportsClient(GraphCaller):
    """Lists a meeting's attendance reports and their records with the app-only token.

    Args:
        base_url: ``Settings.graph_base_url`` (v1.0).
        tokens: app-only token source.
        http: outbound HTTP client.
    """

    def _pages(self, url: str) -> list[dict[str, Any]] | None:
        """Every ``value`` item of a paged list; ``None`` on 404."""
        items: list[dict[str, Any]] = []
        host = urllib.parse.urlsplit(url).netloc
        for _ in range(MAX_PAGES):
            headers = {"Authorization": f"Bearer {self._tokens.token()}", "Accept": "application/json"}
            try:
                response = self._http.get(url, headers=headers)
            except TransportError as exc:
                raise AttendanceReportsError(f"graph_{exc.kind}", transient=True) from exc
            status = response.status_code
            if status == 404:
                return None
            if status == 429 or status >= 500:
                raise AttendanceReportsError(f"graph_http_{status}", transient=True,
                                             retry_after=retry_after_seconds(response.headers.get("Retry-After")))
            if status != 200:
                raise AttendanceReportsError(f"graph_http_{status}", transient=False, not_permitted=status == 403)
            doc = json_or_none(response)
            if not isinstance(doc, dict) or not isinstance(doc.get("value", []), list):
                raise AttendanceReportsError("graph_bad_answer", transient=True)
            items.extend(v for v in doc.get("value") or [] if isinstance(v, dict))
            link = doc.get("@odata.nextLink")
            if not isinstance(link, str) or urllib.parse.urlsplit(link).netloc != host:
                return items
            url = link
        raise AttendanceReportsError("graph_too_many_pages", transient=False)

    def _meeting_url(self, organizer_id: str, meeting_id: str) -> str:
        return (f"{self._base}/users/{urllib.parse.quote(organizer_id, safe='')}/onlineMeetings/"
                f"{urllib.parse.quote(meeting_id, safe='')}/attendanceReports")

    def reports(self, organizer_id: str, meeting_id: str) -> list[dict[str, Any]] | None:
        """The meeting's ``meetingAttendanceReport`` objects (``id``, ``meetingStartDateTime``, ...); ``None`` or
        empty while none is ready.

        Raises:
            AttendanceReportsError.
        """
        return self._pages(self._meeting_url(organizer_id, meeting_id))

    def records(self, organizer_id: str, meeting_id: str, report_id: str) -> list[dict[str, Any]] | None:
        """The ``attendanceRecord`` objects of one report (``None`` when the report is gone).

        Raises:
            AttendanceReportsError.
        """
        return self._pages(f"{self._meeting_url(organizer_id, meeting_id)}/"
                           f"{urllib.parse.quote(report_id, safe='')}/attendanceRecords")
