"""Outbound HTTP for the SMART, Graph and Epic clients: one ``requests`` session, verified TLS, timeouts,
and never a followed redirect.

Redirects are never followed because several URLs we call come (indirectly) from a request: a followed
``302`` would let an EHR endpoint send our client assertion or bearer token to another host (SMART App
Launch STU 2.2, "Security": the app must not forward values to arbitrary URLs). Tests replace the session's
transport adapter with a fake (``session.mount("https://", adapter)``); production code is unchanged.
"""

from __future__ import annotations

import email.utils
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from lib.observability.correlation import outbound_headers

#: The longest wait a ``Retry-After`` may ask of us (a day): past that the value is not believable.
MAX_RETRY_AFTER_SECONDS = 24 * 3600

#: (connect, read) timeouts in seconds: a launch is interactive, so fail fast.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)


class TransportError(Exception):
    """The request did not get an HTTP answer: connection refused, TLS failure, timeout.

    ``kind`` is ``connect``, ``timeout`` or ``tls``; the message never holds the URL's query string.
    """

    def __init__(self, kind: str, host: str) -> None:
        super().__init__(f"{kind} failure talking to {host}")
        self.kind = kind
        self.host = host


@dataclass
class HttpClient:
    """A thin wrapper around ``requests.Session``.

    Args:
        verify: ``Settings.tls_verify`` (``True``, or the local CA bundle path).
        timeout: (connect, read) seconds.
        session: the session to use; a new one by default (tests mount a fake adapter on it).
    """

    verify: bool | str = True
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    session: requests.Session = field(default_factory=requests.Session)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """Send one request; never follows redirects (a 3xx comes back as the response).

        Raises:
            TransportError: no HTTP answer (connection, TLS, timeout).
        """
        host = urllib.parse.urlsplit(url).netloc
        try:
            return self.session.request(
                method, url, headers=outbound_headers(headers), params=params, data=data, json=json,
                verify=self.verify, timeout=self.timeout, allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise TransportError("tls", host) from exc
        except requests.exceptions.Timeout as exc:
            raise TransportError("timeout", host) from exc
        except requests.exceptions.RequestException as exc:
            raise TransportError("connect", host) from exc

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """``GET`` (see :meth:`request`)."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        """``POST`` (see :meth:`request`)."""
        return self.request("POST", url, **kwargs)


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, lower-cased, default ports made explicit."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def same_origin(url: str, reference: str) -> bool:
    """Whether ``url`` is on the same scheme, host and port as ``reference`` and carries no userinfo."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        return False
    return origin(url) == origin(reference) and origin(url)[1] != ""


def json_or_none(response: requests.Response) -> Any:
    """The body parsed as JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> int | None:
    """The wait a ``Retry-After`` header asks for, in whole seconds (RFC 9110 §10.2.3), or ``None``.

    Both forms are read: delta-seconds (``120``) and an HTTP-date (``Wed, 21 Oct 2026 07:28:00 GMT``, counted
    from ``now``). A date in the past is ``0``; a value beyond a day is capped at a day; anything unreadable
    is ``None``.
    """
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return min(int(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(0, round(seconds)), MAX_RETRY_AFTER_SECONDS)
