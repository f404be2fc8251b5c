"""A tiny transport fake for ``requests``: canned answers per (method, URL without query), calls recorded.

Mounted on the ``requests.Session`` of a :class:`lib.smart.transport.HttpClient`, so the production code path
(``session.request(..., allow_redirects=False)``) runs unchanged.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import BaseAdapter

from lib.smart.transport import HttpClient


@dataclass
class Call:
    """One recorded request."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def path_url(self) -> str:
        """The URL without its query string."""
        return self.url.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (single values)."""
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))

    @property
    def form(self) -> dict[str, str]:
        """The body as form parameters."""
        return dict(urllib.parse.parse_qsl(self.body.decode()))

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Handler = Callable[[Call], Answer]


class FakeAdapter(BaseAdapter):
    """Answers from ``routes``; an unknown URL raises ``ConnectionError`` (as an unreachable host would)."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], Handler | list[Answer]] = {}
        self.calls: list[Call] = []

    def on(self, method: str, url: str, *answers: Answer, handler: Handler | None = None) -> None:
        """Answer ``method url`` with ``answers`` in turn (the last repeats), or with ``handler(call)``."""
        self.routes[(method, url)] = handler if handler else list(answers)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = request.body or b""
        call = Call(request.method or "", request.url or "", dict(request.headers),
                    body.encode() if isinstance(body, str) else body)
        self.calls.append(call)
        route = self.routes.get((call.method, call.path_url))
        if route is None:
            raise requests.exceptions.ConnectionError(f"no route for {call.method} {call.path_url}")
        answer = route(call) if callable(route) else (route.pop(0) if len(route) > 1 else route[0])
        status, payload, *rest = answer
        headers = rest[0] if rest else {}
        response = requests.Response()
        response.status_code = status
        response.url = call.url
        response.request = request
        if isinstance(payload, (dict, list)):
            response._content = json.dumps(payload).encode()
            response.headers["Content-Type"] = "application/json"
        else:
            response._content = (payload or "").encode() if isinstance(payload, str) else (payload or b"")
        response.headers.update(headers)
        return response

    def close(self) -> None:
        pass


def fake_client() -> tuple[HttpClient, FakeAdapter]:
    """An :class:`HttpClient` whose session answers from a new :class:`FakeAdapter`."""
    adapter = FakeAdapter()
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return HttpClient(session=session), adapter
