"""A per-process budget for keeping messages sent to an environment that does not exist.

Such a request is unauthenticated (there is no certificate to check it against), yet its body is kept so an
operator can replay it once the environment is configured. Without a budget, anyone could make the
connector write a document per request. The budget is a fixed one-minute window per process: the first
``per_minute`` unknown-environment bodies of each minute are kept, the rest are only answered (404). A real
interface engine pointed at a wrong URL sends a few messages a minute, well inside the budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Unknown-environment bodies kept per minute per process.
UNKNOWN_KEEPS_PER_MINUTE = 20


class KeepLimiter:
    """``take()`` is ``True`` for at most ``per_minute`` calls per minute (``monotonic`` in seconds)."""

    def __init__(self, per_minute: int = UNKNOWN_KEEPS_PER_MINUTE,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0

    def take(self) -> bool:
        """Count one keep when the current minute's budget allows it."""
        window = int(self._monotonic() // 60)
        with self._lock:
            if window != self._window:
                self._window, self._used = window, 0
            if self._used >= self._per_minute:
                return False
            self._used += 1
            return True
