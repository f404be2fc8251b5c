"""A per-process budget for keeping messages sent to an environment that does not exist.

Such a request is unauthenticated (there is no certificate to check it against), yet its body is kept so an
operator can replay it once the environment is configured. Without a budget, anyone could make the
connector write a document per request. The budget is a fixed one-minute window per process: the first
``per_minute`` unknown-environment bodies of each minute are kept, at most ``per_address`` of them from one
client address, the rest are only answered (404). A real interface engine pointed at a wrong URL sends a few
messages a minute, well inside the budget, and one address flooding the URL cannot spend the budget of the
others: the engine's bodies are still kept. (Its failed guesses are also limited per address by the HL7
trigger, ``functions/hl7_intake.py``, with the other secret guesses: ``GUESS_RATE_LIMIT``.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Unknown-environment bodies kept per minute per process.
UNKNOWN_KEEPS_PER_MINUTE = 20
#: Of those, at most this many from one client address.
UNKNOWN_KEEPS_PER_ADDRESS = 5


class KeepLimiter:
    """``take(address)`` is ``True`` for at most ``per_minute`` calls per minute, ``per_address`` of them for one
    address (``monotonic`` in seconds)."""

    def __init__(self, per_minute: int = UNKNOWN_KEEPS_PER_MINUTE, monotonic: Callable[[], float] = time.monotonic,
                 *, per_address: int = UNKNOWN_KEEPS_PER_ADDRESS) -> None:
        self._per_minute = per_minute
        self._per_address = per_address
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0
        self._by_address: dict[str, int] = {}  # at most per_minute entries: only kept bodies are counted

    def take(self, address: str = "unknown") -> bool:
        """Count one keep for ``address`` when the current minute's budgets allow it."""
        window = int(self._monotonic() // 60)
        with self._lock:
            if window != self._window:
                self._window, self._used, self._by_address = window, 0, {}
            taken = self._by_address.get(address, 0)
            if self._used >= self._per_minute or taken >= self._per_address:
                return False
            self._used += 1
            self._by_address[address] = taken + 1
            return True
