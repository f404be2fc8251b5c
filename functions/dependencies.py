"""Builds the services once per process, on first use (never at import: heavy SDKs load lazily).

Every trigger asks :func:`services` for what it needs. Tests may call :func:`reset` after changing the
environment variables to get a fresh set.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

_lock = threading.Lock()
_services: Services | None = None


class Services:
    """The collaborators of the triggers, each built on first access from :class:`lib.settings.Settings`."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        from lib.settings import load_settings

        self.settings = load_settings(environ)

    @cached_property
    def clock(self) -> Any:
        """The system clock, or the local-only file clock when ``DEV_CLOCK_FILE`` is set."""
        from lib.clock import FileClock, SystemClock

        if self.settings.dev_clock_file:
            return FileClock(self.settings.dev_clock_file)
        return SystemClock()

    @cached_property
    def store(self) -> Any:
        """The Cosmos DB database (one client per process)."""
        from lib.store.cosmos import CosmosStore

        return CosmosStore.from_settings(self.settings)

    @cached_property
    def repos(self) -> Any:
        """All repositories, as attributes of one namespace."""
        from types import SimpleNamespace

        from lib.store.appointments import AppointmentRepository
        from lib.store.contacts import ContactRepository
        from lib.store.environments import EnvironmentRepository
        from lib.store.links import LinkRepository
        from lib.store.messages import ProcessedMessages, RejectedMessages
        from lib.store.outbox import OutboxRepository
        from lib.store.timer_state import TimerStateRepository
        from lib.store.visit_events import VisitEventRepository

        return SimpleNamespace(
            environments=EnvironmentRepository(self.store),
            appointments=AppointmentRepository(self.store),
            contacts=ContactRepository(self.store),
            outbox=OutboxRepository(self.store),
            links=LinkRepository(self.store),
            processed=ProcessedMessages(self.store),
            rejected=RejectedMessages(self.store),
            timer_state=TimerStateRepository(self.store),
            visit_events=VisitEventRepository(self.store),
        )

    @cached_property
    def queues(self) -> Any:
        """The queue producer (base64 messages, as the host expects)."""
        from lib.queues import QueueProducer

        return QueueProducer(self.settings)

    @cached_property
    def join_links(self) -> Any:
        """Join-link token maker/checker."""
        from lib.sms.links import JoinLinks

        return JoinLinks(self.settings.link_signing_key)

    @cached_property
    def intake(self) -> Any:
        """The HL7 intake service."""
        from lib.scheduling.intake import AcceptAll, IntakeService

        r = self.repos
        return IntakeService(
            environments=r.environments,
            appointments=r.appointments,
            contacts=r.contacts,
            outbox=r.outbox,
            links=r.links,
            processed=r.processed,
            rejected=r.rejected,
            verifier=AcceptAll(),
            clock=self.clock,
        )

    @cached_property
    def sms_sender(self) -> Any:
        """The ACS SMS client."""
        from lib.sms.sender import AcsSmsSender

        return AcsSmsSender(
            connection_string=self.settings.acs_connection_string,
            endpoint=self.settings.acs_endpoint,
            verify=self.settings.tls_verify,
        )

    @cached_property
    def dispatcher(self) -> Any:
        """The outbox dispatcher."""
        from lib.sms.dispatcher import Dispatcher

        r = self.repos
        return Dispatcher(
            outbox=r.outbox,
            appointments=r.appointments,
            contacts=r.contacts,
            environments=r.environments,
            timer_state=r.timer_state,
            sender=self.sms_sender,
            links=self.join_links,
            public_base_url=self.settings.public_base_url,
            clock=self.clock,
        )


def services() -> Services:
    """The process-wide :class:`Services`, built on first call.

    Raises:
        lib.settings.SettingsError: a required setting is missing.
    """
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = Services()
    return _services


def reset() -> None:
    """Forget the built services (tests that change settings)."""
    global _services
    with _lock:
        _services = None
