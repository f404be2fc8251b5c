"""Who may frame the launch and join pages, and how a refused frame is told apart (docs/launch.md "Embedded
in Epic").

Epic shows apps inside its own windows: Hyperspace's browser, Haiku/Canto web views, MyChart iframes. Our pages
say who may frame them with CSP ``frame-ancestors``: our own origin plus the Epic origins configured for the
environment (``EnvironmentConfig.frame_origins``). The browser enforces that; when it refuses, it shows its own
blank "refused to connect" box. To show a page a person can read instead, a framed request
(``Sec-Fetch-Dest: iframe``) whose ``Referer`` names an origin that is not allowed gets the
``FRAME_NOT_ALLOWED`` page, served framable by anyone (it holds nothing but an explanation). A frame whose parent
sends no ``Referer`` cannot be recognised on the server: the browser's own refusal is all it gets.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lib.field_rules import frame_origin_problem as frame_origin_problem  # the rule lives with the model
from lib.smart.errors import LaunchError

#: ``Sec-Fetch-Dest`` values of a navigation inside a frame.
FRAME_DESTINATIONS = frozenset({"iframe", "frame"})


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of ``url`` (lower case, default port left out), or ``None``."""
    if not url:
        return None
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


@dataclass(frozen=True)
class FrameContext:
    """How a request was made, as far as framing goes: its ``Sec-Fetch-Dest`` and ``Referer``."""

    fetch_dest: str | None = None
    referer: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> FrameContext:
        """Read the two headers (case-insensitive mapping, as ``azure.functions`` gives)."""
        return cls(fetch_dest=(headers.get("sec-fetch-dest") or "").lower() or None,
                   referer=headers.get("referer") or None)

    @property
    def framed(self) -> bool:
        """Whether the browser is loading this into a frame."""
        return self.fetch_dest in FRAME_DESTINATIONS

    def parent_origin(self) -> str | None:
        """The framing page's origin, when the request is framed and the parent sent a ``Referer``."""
        return origin_of(self.referer) if self.framed else None


def check_frame(frame: FrameContext | None, allowed: Iterable[str], own_origin: str) -> None:
    """Refuse a framed request whose parent origin is known and is neither ours nor in ``allowed``.

    Raises:
        LaunchError: ``FRAME_NOT_ALLOWED``, naming the parent origin in the admin hint.
    """
    parent = frame.parent_origin() if frame else None
    if parent is None or parent == own_origin or parent in set(allowed):
        return
    raise LaunchError("FRAME_NOT_ALLOWED", f"The page was opened inside a frame of {parent}, which is not one of "
                                           "the Epic origins allowed to frame it. Add that origin to the "
                                           "environment's frame origins in the configuration portal if it is "
                                           "your Epic.")


class KnownFrameOrigins:
    """Every environment's frame origins together, for pages that belong to no environment yet (an error
    before the ``iss`` is known): such a page stays readable inside any configured Epic.

    Args:
        all_environments: returns the configured environments (``EnvironmentRepository.all``).
        ttl_seconds: how long one answer is reused (a portal change shows within this time).
        monotonic: clock for the cache (tests).
    """

    def __init__(self, all_environments: Callable[[], Iterable[Any]], *, ttl_seconds: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._all = all_environments
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._cached: tuple[float, tuple[str, ...]] | None = None

    def origins(self) -> tuple[str, ...]:
        """The union of ``frame_origins`` over all environments (empty when the store cannot be read)."""
        now = self._monotonic()
        if self._cached and self._cached[0] > now:
            return self._cached[1]
        try:
            found = tuple(dict.fromkeys(o for env in self._all() for o in env.frame_origins))
        except Exception:  # the store is down: error pages still render (framable by us only), and the
            found, ttl = (), min(self._ttl, 10.0)  # store is asked again in 10 s, not on every error page
        else:
            ttl = self._ttl
        self._cached = (now + ttl, found)
        return found
