"""The readiness checks read what they need at the same time: a check costs about one round trip, not one per
queue or hour bucket (the first probe after a start timed out under load when they went one after the other).

Each fake read waits at a barrier that opens only when every read of the check is in flight: reads made one
after the other break the barrier and the check fails. No clock is asserted.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from lib.models import OutboxItem, hour_bucket
from lib.operations.health import all_at_once, check_queues, sms_backlog_seconds
from lib.operations.queues import WATCHED_QUEUES

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
PATIENCE = 30.0  # seconds a read waits for the others before the barrier breaks (never reached when concurrent)


class QueueService:
    """``QueueServiceClient.get_queue_client(name).get_queue_properties()``, each waiting for all the others."""

    def __init__(self, depths: dict[str, int]) -> None:
        self.depths = depths
        self.barrier = threading.Barrier(len(depths), timeout=PATIENCE)
        self.clients_built = 0

    def get_queue_client(self, name: str) -> Any:
        def properties() -> Any:
            self.barrier.wait()
            return SimpleNamespace(approximate_message_count=self.depths[name])

        self.clients_built += 1
        return SimpleNamespace(get_queue_properties=properties)


class OutboxContainer:
    """The ``outbox`` container's single-bucket query, each waiting for the other buckets' queries."""

    def __init__(self, items_by_bucket: dict[str, list[dict[str, Any]]], buckets: int) -> None:
        self.items_by_bucket = items_by_bucket
        self.barrier = threading.Barrier(buckets, timeout=PATIENCE)

    def query_items(self, query: str, parameters: list[dict[str, Any]], **_: Any) -> list[dict[str, Any]]:
        self.barrier.wait()
        bucket = next(p["value"] for p in parameters if p["name"] == "@bucket")
        return self.items_by_bucket.get(bucket, [])


def test_every_queue_depth_is_read_at_the_same_time_through_one_client():
    depths = {name: n for n, name in enumerate(WATCHED_QUEUES)}
    service = QueueService(depths)
    check = check_queues(SimpleNamespace(readiness_queues=service))
    assert check.status == "ok" and check.data["depth"] == depths
    assert check.data["poison"] == sum(n for name, n in depths.items() if name.endswith("-poison"))


def test_the_sms_backlog_reads_its_hour_buckets_at_the_same_time_and_the_oldest_due_text_decides():
    def pending(minutes_ago: int) -> dict[str, Any]:
        due = NOW - timedelta(minutes=minutes_ago)
        return OutboxItem(id=f"e|{minutes_ago}|reminder|1", bucket=hour_bucket(due), appointment_key=f"e|{minutes_ago}",
                          environment_id="e", kind="reminder", revision=1, due_utc=due).to_doc()

    older, newer = pending(100), pending(20)  # two hours back and this hour
    container = OutboxContainer({older["bucket"]: [older], newer["bucket"]: [newer]}, buckets=3)
    services = SimpleNamespace(clock=SimpleNamespace(now=lambda: NOW),
                               store=SimpleNamespace(container=lambda name: container))
    assert sms_backlog_seconds(services) == 100 * 60


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
