"""Moving a visit's Teams meeting: ``PATCH /users/{organizer}/onlineMeetings/{id}`` with ``startDateTime``
and ``endDateTime`` (GRAPH ``api-reference/v1.0/api/onlinemeeting-update.md``; app-only with the same
application access policy as ``createOrGet``)."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime

from lib.smart.transport import TransportError
from lib.teams.graph import GraphCaller, graph_error


class MeetingTimesClient(GraphCaller):
    """Updates an online meeting's start and end.

    Args:
        base_url: ``Settings.graph_base_url`` (with ``/v1.0``).
        tokens: app-only token source.
        http: outbound HTTP client.
    """


    def update_times(self, organizer_id: str, meeting_id: str, start: datetime, end: datetime) -> None:
        """Set the meeting's times.

        Raises:
            LaunchError: ``GRAPH_THROTTLED`` (``retry_after``), ``GRAPH_UNAVAILABLE``, ``GRAPH_*`` refusals.
        """
        from lib.smart.errors import LaunchError

        url = (f"{self._base}/users/{urllib.parse.quote(organizer_id, safe='')}/onlineMeetings/"
               f"{urllib.parse.quote(meeting_id, safe='')}")
        body = {"startDateTime": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endDateTime": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        headers = {"Authorization": f"Bearer {self._tokens.token()}", "Content-Type": "application/json",
                   "Accept": "application/json"}
        try:
            response = self._http.request("PATCH", url, json=body, headers=headers)
        except TransportError as exc:
            raise LaunchError("GRAPH_UNAVAILABLE", f"Microsoft Graph is unreachable ({exc.kind}).") from exc
        if response.status_code not in (200, 204):
            raise graph_error(response.status_code, response.headers.get("Retry-After"))
