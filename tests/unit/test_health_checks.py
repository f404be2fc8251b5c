"""The readiness checks read what they need at the same time: a check costs about one round trip, not one per
queue (the first probe after a start timed out under load when they went one after the other).

Each fake read waits at a barrier that opens only when every read of the check is in flight: reads made one
after the other break the barrier and the check fails. No clock is asserted.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from lib.operations.health import all_at_once, check_queues
from lib.operations.queues import WATCHED_QUEUES

PATIENCE = 30.0  # seconds a read waits for the others before the barrier breaks (never reached when concurrent)


class QueueService:
    """``QueueServiceClient.get_queue_client(name).get_queue_properties()``, each waiting for all the others."""

    def __init__(self, depths: dict[str, int]) -> None:
        self.depths = depths
        self.barrier = threading.Barrier(len(depths), timeout=PATIENCE)

    def get_queue_client(self, name: str) -> Any:
        def properties() -> Any:
            self.barrier.wait()
            return SimpleNamespace(approximate_message_count=self.depths[name])

        return SimpleNamespace(get_queue_properties=properties)


def test_every_queue_depth_is_read_at_the_same_time_through_one_client():
    depths = {name: n for n, name in enumerate(WATCHED_QUEUES)}
    service = QueueService(depths)
    check = check_queues(SimpleNamespace(readiness_queues=service))
    assert check.status == "ok" and check.data["depth"] == depths
    assert check.data["poison"] == sum(n for name, n in depths.items() if name.endswith("-poison"))


def test_all_at_once_keeps_the_order_and_raises_the_failure():
    barrier = threading.Barrier(3, timeout=PATIENCE)

    def read(value: int) -> int:
        barrier.wait()
        return value

    assert all_at_once([lambda: read(1), lambda: read(2), lambda: read(3)]) == [1, 2, 3]

    def fail() -> int:
        raise LookupError("down")

    try:
        all_at_once([lambda: 1, fail])
    except LookupError as exc:
        assert str(exc) == "down"
    else:
        raise AssertionError("the failure was swallowed")
