"""Rate limits of the anonymous entry points: launches, and requests that present a secret (callback and
sign-in ``state``, join-link tokens), per client address (docs/launch.md "Rate limits").

- **Launch attempts** (``GET /api/launch/provider|patient``): every attempt counts, refused or not (each one
  that passes the checks stores a launch state and sets a cookie).
- **Guesses** (a callback or sign-in with an unknown ``state``, a join link or status pass whose signature is
  not ours, an HL7 request to an environment that does not exist or with a failed signature): only the failures
  count; once an address is over the limit, its further requests of that kind are refused before any work until
  the window moves on. A join link or status pass is checked first (its HMAC,
  no store): one we issued is never counted nor refused (:meth:`AnonymousThrottle.presented`), so a patient
  sharing an address with a misbehaving device still gets in.

**Per process, in memory** (the ``limits`` library's moving window), on purpose: the secrets guessed are
128 to 256 random bits, so the limit is not what stops guessing; it stops an address from making us do work
(store writes, outbound discovery, error pages) at machine speed. A store-backed counter would cost a Cosmos
write per request, the very cost it protects, and the launch's store calls are kept to a minimum. With N
instances an address gets at most N times the limit; a global limit belongs in front of the app (Front Door /
Application Gateway WAF rate-limit rules, docs/deploy.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from limits import RateLimitItem, parse, storage, strategies

#: Defaults: a hospital's clinicians may share one NAT address, so launches get room; failures do not.
DEFAULT_LAUNCH_LIMIT = "120/minute"
DEFAULT_GUESS_LIMIT = "20/minute"


@dataclass(frozen=True)
class Refusal:
    """An over-limit request: which limit, and how many seconds until it admits requests again."""

    kind: str
    retry_after: int


class AnonymousThrottle:
    """Moving-window limits per client address, kept in this process.

    Args:
        launch_limit: launch attempts per address, in the ``limits`` notation (``120/minute``).
        guess_limit: failed secret presentations per address (``20/minute``).
        wall: seconds since the epoch (the ``limits`` windows' clock; tests).
    """

    def __init__(self, *, launch_limit: str = DEFAULT_LAUNCH_LIMIT, guess_limit: str = DEFAULT_GUESS_LIMIT,
                 wall: Callable[[], float] = time.time) -> None:
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._items: dict[str, RateLimitItem] = {"launch": parse(launch_limit), "guess": parse(guess_limit)}
        self._wall = wall

    def launch_attempt(self, client: str) -> Refusal | None:
        """Count one launch attempt of ``client``; a :class:`Refusal` when it is over the limit."""
        item = self._items["launch"]
        if self._limiter.hit(item, "launch", client):
            return None
        return self._refusal("launch", client)

    def guesses_exhausted(self, client: str) -> Refusal | None:
        """A :class:`Refusal` when ``client`` already made too many failed guesses (nothing is counted)."""
        if self._limiter.test(self._items["guess"], "guess", client):
            return None
        return self._refusal("guess", client)

    def presented(self, client: str, *, issued: bool) -> Refusal | None:
        """Account for a secret ``client`` presented whose signature the caller checked (an HMAC, no store): one
        we ``issued`` is never refused nor counted, even from an address over the limit (patients behind one
        carrier NAT or clinic Wi-Fi share it). Any other is a failed guess: refused while the address is over
        the limit, else counted."""
        if issued:
            return None
        refusal = self.guesses_exhausted(client)
        if refusal is None:
            self.failed_guess(client)
        return refusal

    def failed_guess(self, client: str) -> None:
        """Count one failed guess of ``client`` (unknown state, invalid join link)."""
        self._limiter.hit(self._items["guess"], "guess", client)

    def _refusal(self, kind: str, client: str) -> Refusal:
        stats = self._limiter.get_window_stats(self._items[kind], kind, client)
        return Refusal(kind, max(1, math.ceil(stats.reset_time - self._wall())))


def client_address(headers: Mapping[str, str]) -> str:
    """The client's address as the platform's front end reports it: the last ``X-Forwarded-For`` entry (the
    one App Service's front end appends; earlier entries come from the client and are not trusted), without
    a port; ``unknown`` when there is none (every such request then shares one limit)."""
    forwarded = (headers.get("x-forwarded-for") or "").split(",")[-1].strip()
    if not forwarded:
        return "unknown"
    if forwarded.startswith("["):  # [IPv6]:port
        return forwarded[1:].split("]")[0][:64]
    if forwarded.count(":") == 1:  # IPv4:port
        forwarded = forwarded.split(":")[0]
    return forwarded[:64]
