"""Readiness checks: configuration, the Cosmos DB store, the queues. Each is bounded in time.

:func:`check_readiness` runs the checks in parallel, each in its own daemon thread, and waits at most
``timeout`` seconds for each (``total`` for all): an unreachable dependency is reported as ``timeout``
rather than hanging the caller (the Cosmos SDK retries refused connections for much longer than a
health probe waits). The answer names each dependency and its status and never holds a secret, an
endpoint, an exception message or PHI: only setting names, counts, durations and exception type names.

Within a check the reads go out at the same time too, and the queue check reuses one client per process
(``Services.readiness_queues``: one connection pool, one credential), so a check costs about one round trip
however many queues it reads. The first probe after a start used to read nine queues one after the other,
each through a new client (a new connection, and in Azure a new managed-identity token), and the store's
every environment document before the backlog, on top of the SDKs' own first calls: on a loaded instance
that passed the 2.5 s a check could take, so the first probe answered "timeout" for a healthy store.

Checks:
- ``configuration``: the settings load (a :class:`lib.settings.SettingsError` names the setting), queue
  storage and SMS are configured;
- ``cosmos``: reads the ``environments`` container (the IDs and HL7 certificates only, and counts them: at
  least one must be configured for the app to do anything; ``certificatesExpiringSoon`` names each environment
  whose certificate ends within 30 days, with the days left), and how long the oldest due text has waited
  (:func:`sms_backlog_seconds`, the ``vv.reminder.lag`` metric with kind ``backlog``);
- ``queues``: the properties of ``sms-outbox``, ``visit-events`` and their poison queues (depths are
  reported, and recorded as the ``vv.queue.depth`` metric; poison messages do not make the app unready,
  they raise an alert).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lib.observability import metrics

__all__ = ["Check", "Readiness", "check_cosmos", "check_queues", "check_readiness", "sms_backlog_seconds"]

#: Seconds one check may take, and all of them together. Our callers wait 10 s (``scripts/deploy.sh``) and
#: 30 s (the availability test of ``infra/app/healthtests.bicep``); a cold instance's first probe also pays the
#: SDKs' first calls (the Cosmos client's account read, container metadata), which took 1.4 to 3.7 s on a
#: loaded 2-core machine: 2.5 s answered "timeout" for a healthy store.
DEFAULT_CHECK_TIMEOUT = 5.0
DEFAULT_TOTAL_TIMEOUT = 8.0

T = TypeVar("T")


@dataclass
class Check:
    """One dependency's result: ``status`` ``ok``, ``failed``, ``timeout`` or ``skipped``; ``detail`` a
    fixed phrase or setting names; ``data`` counts; ``ms`` the time it took (or waited)."""

    name: str
    status: str = "ok"
    detail: str | None = None
    ms: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of the readiness answer's entry."""
        doc: dict[str, Any] = {"status": self.status, "ms": round(self.ms, 1)}
        if self.detail:
            doc["detail"] = self.detail
        doc.update(self.data)
        return doc


@dataclass
class Readiness:
    """The readiness answer: ``ready`` when every check is ``ok``."""

    checks: list[Check]
    ms: float

    @property
    def ready(self) -> bool:
        """True when every check passed."""
        return all(c.status == "ok" for c in self.checks)

    @property
    def failing(self) -> list[str]:
        """Names of the checks that did not pass."""
        return [c.name for c in self.checks if c.status != "ok"]

    def to_json(self) -> dict[str, Any]:
        """``{"status": "ready"|"not-ready", "failing": [...], "checks": {...}, "ms": ...}``."""
        return {
            "status": "ready" if self.ready else "not-ready",
            "failing": self.failing,
            "checks": {c.name: c.to_json() for c in self.checks},
            "ms": round(self.ms, 1),
        }


def _configuration(settings: Any) -> Check:
    check = Check("configuration")
    missing = []
    if not (settings.storage_connection or settings.storage_queue_uri):
        missing.append("AzureWebJobsStorage")
    if not (settings.acs_connection_string or settings.acs_endpoint):
        missing.append("ACS_ENDPOINT")
    if missing:
        check.status, check.detail = "failed", "missing settings: " + ", ".join(missing)
    return check


def all_at_once(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``calls`` at the same time and return their results in order; the first failure is raised.

    Daemon threads, as for the checks themselves: a read that never answers cannot keep the process alive
    (the caller's deadline decides how long anyone waits).
    """
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"ready-read-{i}", daemon=True)
               for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def check_cosmos(services: Any) -> Check:
    """The store answers: the environments (at least one) and the SMS backlog, read at the same time."""
    from lib.config.certificates import soonest_expiry
    from lib.store.environments import EnvironmentRepository

    check = Check("cosmos")
    store = services.store  # built here, once, before the reads fan out
    environments, backlog = all_at_once([lambda: EnvironmentRepository(store, cache_seconds=0).certificates(),
                                         lambda: sms_backlog_seconds(services)])
    check.data["environments"] = len(environments)
    if not environments:
        check.status, check.detail = "failed", "no environment is configured"
    check.data["smsBacklogSeconds"] = round(backlog)
    # Environments whose HL7 certificate ends within 30 days (negative: ended): a warning, not unreadiness
    # (the app still serves everything else); the "HL7 certificate expiry" alert reads it (docs/operations.md).
    now = services.clock.now()
    expiring = {env_id: found[0] for env_id, texts in environments.items()
                if (found := soonest_expiry(texts, now)) is not None}
    check.data["certificatesExpiringSoon"] = dict(sorted(expiring.items()))
    for env_id, days in expiring.items():
        metrics.certificate_days_left(env_id, days)
    return check


def sms_backlog_seconds(services: Any, *, hours: int = 3) -> float:
    """Seconds the oldest due, unsent text has waited (0 when none), among the texts due in the last ``hours``.

    Recorded as ``vv.reminder.lag`` (kind ``backlog``): texts that go out on time keep it near 0; a
    stopped timer, an ACS outage or a throttled sender makes it grow (the "Reminder lag" alert).
    """
    from datetime import timedelta

    from lib.store.outbox import OutboxRepository

    now = services.clock.now()
    due = OutboxRepository(services.store).due(now, since=now - timedelta(hours=hours), limit=1)
    lag = max(0.0, (now - due[0].due_utc).total_seconds()) if due else 0.0
    metrics.reminder_lag("backlog", lag)
    return lag


def check_queues(services: Any) -> Check:
    """The queue service answers: every watched queue's depth, read at the same time through the one
    ``services.readiness_queues`` client."""
    from lib.operations.queues import WATCHED_QUEUES, depth

    check = Check("queues")
    client = services.readiness_queues
    found = all_at_once([lambda name=name: depth(client.get_queue_client(name)) for name in WATCHED_QUEUES])
    depths = dict(zip(WATCHED_QUEUES, found, strict=True))
    for name, count in depths.items():
        metrics.queue_depth(name, count)
    check.data["depth"] = depths
    check.data["poison"] = sum(v for k, v in depths.items() if k.endswith("-poison"))
    return check


def _bounded(name: str, work: Callable[[], Check], deadline: float) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []

    def run() -> None:
        started = time.monotonic()
        try:
            result = work()
        except Exception as exc:  # reported by type only: messages can hold endpoints
            result = Check(name, "failed", f"{type(exc).__name__}")
        result.ms = (time.monotonic() - started) * 1000
        box.append(result)

    thread = threading.Thread(target=run, name=f"ready-{name}", daemon=True)
    thread.start()
    return thread, box


def check_readiness(
    load_services: Callable[[], Any],
    *,
    timeout: float = DEFAULT_CHECK_TIMEOUT,
    total: float = DEFAULT_TOTAL_TIMEOUT,
) -> Readiness:
    """Run every check; returns within about ``min(timeout, total)`` seconds whatever the dependencies do.

    Args:
        load_services: returns the app's ``functions.dependencies.Services`` (it may raise
            :class:`lib.settings.SettingsError`, reported under ``configuration``).
        timeout: seconds one check may take.
        total: seconds all checks may take together.
    """
    from lib.settings import SettingsError

    started = time.monotonic()
    try:
        services = load_services()
    except SettingsError as exc:  # the message names the setting, never its value
        checks = [Check("configuration", "failed", str(exc))]
        checks += [Check(n, "skipped", "configuration failed") for n in ("cosmos", "queues")]
        return Readiness(checks, (time.monotonic() - started) * 1000)
    settings = services.settings
    work: dict[str, Callable[[], Check]] = {
        "configuration": lambda: _configuration(settings),
        "cosmos": lambda: check_cosmos(services),
        "queues": lambda: check_queues(services),
    }
    wait = min(timeout, total)
    deadline = started + wait
    running = {name: _bounded(name, fn, deadline) for name, fn in work.items()}
    checks: list[Check] = []
    for name, (thread, box) in running.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        if box:
            checks.append(box[0])
        else:
            checks.append(Check(name, "timeout", f"no answer within {wait:g} s", ms=wait * 1000))
    return Readiness(checks, (time.monotonic() - started) * 1000)
