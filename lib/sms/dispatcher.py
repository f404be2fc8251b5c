"""The outbox dispatcher: sends due texts exactly once.

State machine of an outbox item (every move is an ETag-guarded replace, so only one worker wins):

    pending --claim--> sending --> sent | failed | blocked | pending (retry later) | unknown (operator review)
    pending --> skipped   (superseded revision, appointment cancelled or started, no number, SMS off,
                           number not E.164, quiet hours lasting until the visit)
    pending --> blocked   (the recipient opted out of this sender)
    sending --(left behind by a crash for STALE_SENDING)--> unknown

A worker that loses the claim race does nothing.

Every attempt carries an ACS repeatable request (``lib/sms/repeatability.py``) stored in the claim, before
the call. After an answer that leaves open whether ACS took the text (a 5xx, a read time-out or a connection
dropped after the request left, a 409 "original request still in progress") the retry repeats the *same*
request ID and first-sent time within a minute, so ACS answers the first result instead of texting twice
(ACS "Repeatable requests": requests are tracked for 5 minutes). Once that window has passed (4 minutes on
our side, for clock skew) the item goes to ``unknown`` for an operator (``./dev ops sms review``) instead
of being resent; a delivery report for its tag reconciles it to ``sent``. A worker that died between the
claim and the record leaves the item ``sending``: after :data:`STALE_SENDING` it is ``unknown`` too. After
an answer that proves nothing was sent (429, connection refused) the next attempt is a new request.

The environment is read fresh (never the per-process cache) before deciding, so SMS switched off in the
portal stops the next send; its settings are checked again (``sending_problems``) and the rendered text must
fit the segment budget. A number the sender cannot reach, a number that opted out or whose texts failed
("Failed" delivery report) are not texted, with the reason recorded. The per-number cap limits reminders
only: a booked, changed or cancelled text is always sent and counts toward the cap, so it takes the place
of a later reminder; a reminder over the cap is ``skipped`` with the reason and counted (outcome
``capped``).

Before each claim: the appointment is checked (status, revision, start), the number must be E.164 and not
opted out, reminders respect quiet hours at send time too (a catch-up after downtime at 23:00 waits for
08:00, or is skipped when the visit starts first), and the sender's per-minute budget must allow it. A queued
text reads these singly; a timer run reads them for a whole page of due items at once (one ReadMany each for
appointments, phone numbers and opt-outs, one budget update per sender), so a due reminder costs its three
writes (claim, message index, outcome) plus a small share of the page's reads. Reading a page's facts
before its sends does not widen any race: every claim is ETag-guarded on the item as the page query read
it, and the intake moves superseded or cancelled texts out of ``pending`` with the same guard.
After an ACS 429 in a timer run, the rest of that run sends nothing more from that sender (Retry-After);
the throttled item itself is due again after Retry-After.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from lib.clock import Clock, SystemClock
from lib.models import Appointment, EnvironmentConfig, OutboxItem
from lib.sms.configuration import is_e164, sending_problems, unreachable_reason
from lib.sms.links import JoinLinks
from lib.sms.quiet_hours import first_allowed_after, reminder_may_go
from lib.sms.repeatability import Repeatability
from lib.sms.segments import MAX_SEGMENTS, count_segments
from lib.sms.sender import SendResult
from lib.sms.templates import render, template_language
from lib.store.appointments import AppointmentRepository
from lib.store.contacts import ContactRepository
from lib.store.environments import EnvironmentRepository
from lib.store.errors import ConcurrencyConflict
from lib.store.outbox import OutboxRepository
from lib.stored_settings import NOT_FOR_TEXTS, UnusableSetting, check_usable

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
#: Longest wait before repeating an attempt ACS may have accepted (inside its 5-minute tracking window).
AMBIGUOUS_RETRY_DELAY = timedelta(seconds=60)
LINK_GRACE = timedelta(hours=2)
#: How far back the timer looks for pending texts (after downtime it catches up within this window; texts
#: about visits that have started are skipped, never sent).
MAX_LOOKBACK = timedelta(days=2)
#: A ``sending`` item older than this was left by a worker that died mid-send (a send takes seconds;
#: the ACS client's read timeout is 10 s).
STALE_SENDING = timedelta(minutes=5)
#: Items read per query, and at most this many pages per run (a timer run is a minute apart).
PAGE_SIZE = 200
MAX_PAGES = 25
#: States of a text that reached the patient, or may have (a send in flight, an outcome ACS left unknown;
#: also a ``pending`` repeat after a time-out, ``maybe_accepted``).
_MAY_HAVE_REACHED_THE_PATIENT = frozenset({"sent", "sending", "unknown"})
#: Outcomes that moved an item out of ``pending``-and-due (so the next page shows new items).
_PROGRESS = frozenset({"sent", "skipped", "capped", "blocked", "failed", "unknown", "retry", "quiet-hours"})
#: Texts that change what the patient must do: the per-number cap never drops them (it limits reminders),
#: but they count toward it, so they take the place of the reminders that would come after them.
NEVER_CAPPED = frozenset({"booked", "changed", "cancelled"})
#: ACS texts the per-recipient error message of a number that sent STOP to a toll-free sender
#: (ACS ``sms-faq.md``: "Sender blocked for given recipient").
_BLOCKED_MARKERS = ("blocked", "opted out", "opt-out", "optout")


class Sender(Protocol):
    """What the dispatcher needs from an SMS client (:class:`lib.sms.sender.AcsSmsSender`)."""

    def send(
        self, *, sender: str, to: str, message: str, tag: str | None = None, repeat: Repeatability | None = None
    ) -> SendResult: ...


class OptOuts(Protocol):
    """:class:`lib.store.opt_outs.OptOutRepository`."""

    def stop_reason(self, sender: str, recipient: str) -> str | None: ...

    def stop_reasons(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]: ...

    def record(self, sender: str, recipient: str, *, opted_out: bool, event_time: datetime, keyword: str) -> bool: ...

    def take_cap_slot(self, environment_id: str, item_id: str, sender: str, recipient: str, *, now: datetime,
                      limit: int, window: timedelta, always: bool = False) -> bool: ...


class MessageIndex(Protocol):
    """:class:`lib.store.sms_messages.SmsMessageRepository`."""

    def put(self, message_id: str, outbox_id: str) -> None: ...


class ReportFeed(Protocol):
    """:class:`lib.reports.inputs.ReportFeed`."""

    def text_changed(self, appointment_key: str, text_id: str, bucket: str) -> None: ...


class RateLimiter(Protocol):
    """:class:`lib.store.sender_rate.SenderRateLimiter`."""

    def take(self, sender: str, *, now: datetime, per_minute: int) -> bool: ...

    def take_many(self, sender: str, *, now: datetime, per_minute: int, count: int) -> int: ...


@dataclass(frozen=True)
class _Facts:
    """What deciding about one outbox item needs, read before the decision (singly or for a whole page)."""

    appointment: Appointment | None
    environment: EnvironmentConfig | None
    phone: str | None
    stop: str | None  # why the number must not be texted (opted out, undeliverable), or None
    unusable: UnusableSetting | None = None  # the environment's stored document cannot be read


@dataclass
class RunReport:
    """What one dispatcher run did, for logs and the benchmark.

    ``queries`` counts the run's due-item queries (one per page), ``documents_read`` the documents they
    returned; per-item point reads and writes are proportional to the items due.
    """

    outcomes: dict[str, int] = field(default_factory=dict)
    queries: int = 0
    documents_read: int = 0

    def count(self, outcome: str) -> None:
        """Add one outcome."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class Dispatcher:
    """Sends outbox items. Collaborators are injected (see ``functions/dependencies.py``)."""

    def __init__(
        self,
        *,
        outbox: OutboxRepository,
        appointments: AppointmentRepository,
        contacts: ContactRepository,
        environments: EnvironmentRepository,
        sender: Sender,
        links: JoinLinks,
        public_base_url: str,
        clock: Clock,
        opt_outs: OptOuts | None = None,
        messages: MessageIndex | None = None,
        rate_limiter: RateLimiter | None = None,
        reports: ReportFeed | None = None,
        wall_clock: Clock | None = None,
    ) -> None:
        self._outbox = outbox
        self._appointments = appointments
        self._contacts = contacts
        self._environments = environments
        self._sender = sender
        self._links = links
        self._public_base_url = public_base_url
        self._clock = clock
        self._opt_outs = opt_outs
        self._messages = messages
        self._rate = rate_limiter
        self._reports = reports
        # ACS compares repeatability times with its own clock: the real one, never the demo clock.
        self._wall_clock = wall_clock or SystemClock()

    def join_link(self, environment: EnvironmentConfig, appointment: Appointment) -> str | None:
        """The patient's join link for ``appointment`` (expires two hours after its end)."""
        if not appointment.link_id or not appointment.end_utc:
            return None
        base = (environment.sms.join_link_base_url or self._public_base_url).rstrip("/")
        token = self._links.token(appointment.link_id, appointment.end_utc + LINK_GRACE)
        return f"{base}/api/join/{token}"

    def send_one(self, item_id: str) -> str:
        """Send one outbox item if it is still pending and due; returns the outcome word.

        Outcomes: ``sent``, ``skipped``, ``capped`` (skipped by the per-number cap), ``blocked``, ``retry``,
        ``failed``, ``unknown``, ``not-due``, ``done-already``, ``lost-race``, ``missing``, ``rate-limited``,
        ``quiet-hours``.

        Raises:
            StoreUnavailable: the store is down (the queue message comes back later).
        """
        item = self._outbox.get(item_id)
        if item is None:
            return "missing"
        return self._send(item, None)

    def _send(self, item: OutboxItem, paused: dict[str, datetime] | None) -> str:
        """Decide and, when everything allows it, send one ``item`` (point reads of what it needs).

        ``paused`` (sender -> until when) is the current timer run's back-off after an ACS 429; ``None``
        outside a run (a queued confirmation)."""
        now = self._clock.now()
        early = self._early_outcome(item, now)
        if early is not None:
            return early
        appointment = self._appointments.get(item.appointment_key)
        # Fresh, not cached: SMS switched off by another instance must stop this very send.
        environment, unreadable = self._fresh_environment(item.environment_id)
        phone = None
        if _skip_reason(item, appointment, environment, now) is None:
            phone = self._contacts.phone(item.appointment_key, now=now)
        stop = None
        if environment is not None and phone is not None and is_e164(phone) and self._opt_outs is not None:
            stop = self._opt_outs.stop_reason(environment.sms.sender or "", phone)
        facts = _Facts(appointment, environment, phone, stop, unreadable)
        outcome = self._refusal(item, facts, now)
        if outcome is not None:
            return outcome
        assert environment is not None
        sms = environment.sms
        sender = sms.sender or ""
        if paused is not None and paused.get(sender, now) > now:
            return "rate-limited"
        if self._rate is not None and not self._rate.take(sender, now=now, per_minute=sms.rate_per_minute):
            return "rate-limited"  # stays pending and due: the next timer run (a minute later) takes it
        return self._deliver(item, facts, now, paused)

    def _send_page(self, items: list[OutboxItem], paused: dict[str, datetime]) -> list[str]:
        """Decide and send one page of a timer run with batch reads: the page's appointments, phone numbers
        and opt-outs in one ReadMany each, and one rate-limit update per sender, so a due text costs its
        three writes (claim, message index, outcome) plus a small share of the page's reads."""
        now = self._clock.now()
        outcomes: dict[int, str] = {}
        ready: list[int] = []
        for index, item in enumerate(items):
            early = self._early_outcome(item, now)
            if early is None:
                ready.append(index)
            else:
                outcomes[index] = early
        appointments = self._appointments.get_many([items[i].appointment_key for i in ready]) if ready else {}
        # Fresh, not cached (once per environment of the page): SMS switched off stops this page's sends.
        fresh = {eid: self._fresh_environment(eid) for eid in {items[i].environment_id for i in ready}}
        environments = {i: fresh[items[i].environment_id][0] for i in ready}
        wanted = [i for i in ready if _skip_reason(items[i], appointments.get(items[i].appointment_key),
                                                    environments[i], now) is None]
        phones = self._contacts.phones([items[i].appointment_key for i in wanted], now=now) if wanted else {}
        pairs: dict[int, tuple[str, str]] = {}
        for i in wanted:
            phone, environment = phones.get(items[i].appointment_key), environments[i]
            if phone is not None and is_e164(phone) and environment is not None:
                pairs[i] = (environment.sms.sender or "", phone)
        stops = self._opt_outs.stop_reasons(list(pairs.values())) if self._opt_outs is not None and pairs else {}
        facts: dict[int, _Facts] = {
            i: _Facts(appointments.get(items[i].appointment_key), environments[i],
                      phones.get(items[i].appointment_key) if i in wanted else None,
                      stops.get(pairs[i]) if i in pairs else None, fresh[items[i].environment_id][1])
            for i in ready
        }
        by_sender: dict[tuple[str, int], list[int]] = {}
        for i in ready:
            outcome = self._refusal(items[i], facts[i], now)
            if outcome is not None:
                outcomes[i] = outcome
                continue
            sms = facts[i].environment.sms  # type: ignore[union-attr]
            by_sender.setdefault((sms.sender or "", sms.rate_per_minute), []).append(i)
        for (sender, per_minute), indexes in by_sender.items():
            if paused.get(sender, now) > now:
                granted = 0
            elif self._rate is None:
                granted = len(indexes)
            else:
                granted = self._rate.take_many(sender, now=now, per_minute=per_minute, count=len(indexes))
            for n, i in enumerate(indexes):
                if n >= granted or paused.get(sender, now) > now:
                    outcomes[i] = "rate-limited"  # stays pending and due: a later run takes it
                else:
                    outcomes[i] = self._deliver(items[i], facts[i], now, paused)
        return [outcomes[i] for i in range(len(items))]

    def _early_outcome(self, item: OutboxItem, now: datetime) -> str | None:
        """The outcome of an item that is not pending-and-due (a ``sending`` item left behind by a dead worker
        goes to ``unknown``), or ``None`` when it is."""
        if item.state == "sending" and item.claimed_utc is not None and item.claimed_utc <= now - STALE_SENDING:
            return self._finish(item, "unknown", reason="the worker sending it stopped before recording the outcome")
        if item.state != "pending":
            return "done-already"
        if item.due_utc > now:
            return "not-due"
        return None

    def _unusable(self, item: OutboxItem, unusable: UnusableSetting) -> str:
        """Fail ``item``: a stored setting of its environment breaks the portal's rules (named in the reason)."""
        log.warning("sms not sent: environment %s has unusable settings (%s); correct them in the portal",
                    item.environment_id, ", ".join(p.setting for p in unusable.problems))
        return self._finish(item, "failed", reason=unusable.reason)

    def _fresh_environment(self, environment_id: str) -> tuple[EnvironmentConfig | None, UnusableSetting | None]:
        """The environment read fresh, or why its stored document cannot be read."""
        try:
            return self._environments.get(environment_id, fresh=True), None
        except UnusableSetting as unreadable:
            return None, unreadable

    def _refusal(self, item: OutboxItem, facts: _Facts, now: datetime) -> str | None:
        """Finish ``item`` when it must not be sent now (skipped, blocked, deferred for quiet hours, failed on a
        stored setting the portal refuses) and return the outcome; ``None`` when it may be sent."""
        if facts.unusable is not None:
            return self._unusable(item, facts.unusable)
        skip_reason = _skip_reason(item, facts.appointment, facts.environment, now)
        if skip_reason is None:
            if facts.phone is None:
                skip_reason = "no SMS number on file"
            elif not is_e164(facts.phone):
                skip_reason = "the number on file is not in E.164 format"
        if skip_reason is None and item.kind == "cancelled" and not self._patient_was_told(item):
            skip_reason = "the patient was never texted about this visit"
        if skip_reason is not None:
            return self._finish(item, "skipped", reason=skip_reason)
        assert facts.appointment is not None and facts.environment is not None and facts.phone is not None
        environment, appointment = facts.environment, facts.appointment
        try:
            check_usable(environment, ignore=NOT_FOR_TEXTS)
        except UnusableSetting as unusable:
            return self._unusable(item, unusable)
        problems = sending_problems(environment)
        if problems:  # stored by a path that skipped the portal's check: never sent as they are
            return self._finish(item, "failed", reason="the SMS settings are invalid: " + "; ".join(problems))
        sms = environment.sms
        unreachable = unreachable_reason(sms, facts.phone)
        if unreachable is not None:
            return self._finish(item, "skipped", reason=unreachable)
        if facts.stop is not None:
            return self._finish(item, "blocked", reason=facts.stop)
        if item.kind == "reminder" and not reminder_may_go(now, _planned_instant(item), environment.time_zone,
                                                           sms.quiet_hours):
            later = first_allowed_after(now, environment.time_zone, sms.quiet_hours)
            if appointment.start_utc is None or later >= appointment.start_utc:
                return self._finish(item, "skipped", reason="quiet hours last until the visit starts")
            self._finish(item, "pending", due_utc=later, reason="deferred: quiet hours")
            return "quiet-hours"
        return None

    def _patient_was_told(self, cancellation: OutboxItem) -> bool:
        """Whether a text about the visit of ``cancellation`` reached (or may have reached) the patient: a
        cancellation notice about a visit the patient never heard of (booked and cancelled before its
        confirmation went out) would only confuse them. One query in the visit's partition, for cancellation
        notices only."""
        return any(
            text.kind != "cancelled"
            and (text.state in _MAY_HAVE_REACHED_THE_PATIENT or (text.state == "pending" and text.maybe_accepted))
            for text in self._outbox.for_appointment(cancellation.appointment_key)
        )

    def _told_before(self, change: OutboxItem) -> bool:
        """Whether a text of an earlier schedule revision of the visit reached (or may have reached) the
        patient. When none did (the visit moved before its booking text went out), the change is worded as
        the booking, with the final time: "has moved" would tell of a time the patient never heard. Earlier
        revisions only, so a retry of this very text is worded the same (ACS repeats need the same body)."""
        return any(
            text.revision < change.revision and text.kind != "cancelled"
            and (text.state in _MAY_HAVE_REACHED_THE_PATIENT or (text.state == "pending" and text.maybe_accepted))
            for text in self._outbox.for_appointment(change.appointment_key)
        )

    def _deliver(self, item: OutboxItem, facts: _Facts, now: datetime, paused: dict[str, datetime] | None) -> str:
        """Claim ``item`` (ETag), send it through ACS and record the outcome."""
        assert facts.appointment is not None and facts.environment is not None and facts.phone is not None
        environment, appointment, phone = facts.environment, facts.appointment, facts.phone
        sms = environment.sms
        sender = sms.sender or ""
        if (self._opt_outs is not None and sms.per_number_cap > 0
                and not self._opt_outs.take_cap_slot(
                    item.environment_id, item.id, sender, phone, now=now, limit=sms.per_number_cap,
                    window=timedelta(hours=sms.per_number_window_hours), always=item.kind in NEVER_CAPPED)):
            log.warning("sms capped appointment=%s kind=%s revision=%d", item.appointment_key.split("|", 1)[-1],
                        item.kind, item.revision)
            outcome = self._finish(item, "skipped", reason=f"this number already got {sms.per_number_cap} texts "
                                   f"in {sms.per_number_window_hours} hours (per-number cap)")
            return "capped" if outcome == "skipped" else outcome  # counted as vv.sms.messages outcome=capped
        repeat = self._repeatability(item)
        if repeat is None:
            return self._finish(item, "unknown", reason="ACS may have sent the text (5xx or no answer) and no longer "
                                "tracks that attempt: not resent")
        language = template_language(appointment.language, sms.default_language, sms.templates)
        wording = "booked" if item.kind == "changed" and sms.confirm_booked and not self._told_before(item) \
            else item.kind
        # The text is composed before the claim: a failure here provably sent nothing, so it is recorded as
        # failed with its cause instead of leaving a claim behind that would read as "outcome unknown".
        try:
            text = render(
                wording,
                language=language,
                org=environment.display_name,
                start_utc=appointment.start_utc,
                time_zone=environment.time_zone,
                link=self.join_link(environment, appointment),
                overrides=sms.templates,
                default_language=sms.default_language,
            )
        except Exception as exc:
            log.warning("sms not composed appointment=%s kind=%s error=%s",
                        item.appointment_key.split("|", 1)[-1], item.kind, type(exc).__name__)
            return self._finish(item, "failed", reason=f"the text could not be composed, nothing was sent: "
                                f"{_error_name(exc)}: {str(exc)[:160]}")
        segments = count_segments(text).segments
        if segments > MAX_SEGMENTS:  # the settings check is by worst case; this is the text itself
            return self._finish(item, "failed", reason=f"the text would take {segments} segments, more than "
                                f"{MAX_SEGMENTS}: shorten the template or the organization name")
        try:
            # language and the number's last two digits ride on the claim write, for the texts report; the
            # repeatable request is stored before the call
            claimed = self._outbox.transition(item, state="sending", attempts=item.attempts + 1, claimed_utc=now,
                                              language=language, recipient_last2=phone[-2:],
                                              repeat_id=repeat.request_id, repeat_first_sent=repeat.first_sent)
        except ConcurrencyConflict:
            return "lost-race"
        result = self._sender.send(sender=sender, to=phone, message=text, tag=item.id, repeat=repeat)
        log.info(
            "sms appointment=%s kind=%s revision=%d outcome=%s segments=%d",
            item.appointment_key.split("|", 1)[-1], item.kind, item.revision, result.status, segments,
        )
        if result.status == "sent":
            if self._messages is not None and result.message_id:
                self._messages.put(result.message_id, claimed.id)
            return self._finish(claimed, "sent", message_id=result.message_id, sent_utc=now, segments=segments)
        if result.status == "retry":
            if result.retry_after and paused is not None:
                paused[sender] = now + timedelta(seconds=result.retry_after)
            if claimed.attempts < MAX_ATTEMPTS:
                delay = timedelta(seconds=result.retry_after or 30 * 2 ** (claimed.attempts - 1))
                if result.maybe_accepted:  # repeat while ACS still remembers the request
                    delay = min(delay, AMBIGUOUS_RETRY_DELAY)
                self._finish(claimed, "pending", due_utc=now + delay, reason=result.reason,
                             maybe_accepted=claimed.maybe_accepted or result.maybe_accepted)
                return "retry"
            if claimed.maybe_accepted or result.maybe_accepted:  # ACS may have sent it (a 5xx, no answer)
                return self._finish(claimed, "unknown", maybe_accepted=True,
                                    reason=f"gave up after {claimed.attempts} attempts, ACS may have sent it: "
                                    f"{result.reason}")
            return self._finish(claimed, "failed", reason=f"gave up after {claimed.attempts} attempts: {result.reason}")
        if result.status == "unknown":
            return self._finish(claimed, "unknown", reason=result.reason)
        reason = result.reason or "ACS refused the text"
        blocked = any(m in reason.lower() for m in _BLOCKED_MARKERS)
        if blocked and self._opt_outs is not None:  # ACS holds the number's STOP: record it as the opt-out it is
            self._opt_outs.record(sender, phone, opted_out=True, event_time=now, keyword="ACS-BLOCKED")
        return self._finish(claimed, "blocked" if blocked else "failed", reason=reason)

    def _repeatability(self, item: OutboxItem) -> Repeatability | None:
        """The repeatable request of this attempt: the stored one after a possibly accepted attempt (``None``
        when ACS no longer tracks it), else a new one."""
        wall_now = self._wall_clock.now().replace(microsecond=0)
        if item.maybe_accepted:
            if item.repeat_id is None or item.repeat_first_sent is None:
                return None
            stored = Repeatability(item.repeat_id, item.repeat_first_sent)
            return stored if stored.still_deduplicated(wall_now) else None
        return Repeatability(str(uuid.uuid4()), wall_now)

    def _finish(self, item: OutboxItem, state: str, **changes: object) -> str:
        try:
            self._outbox.transition(item, state=state, **changes)
        except ConcurrencyConflict:
            return "lost-race"
        if item.kind == "cancelled" and state != "pending":
            # The number of a cancelled visit was kept only for this notice (lib/scheduling/apply.py).
            self._contacts.delete(item.appointment_key)
        if self._reports is not None:
            try:
                self._reports.text_changed(item.appointment_key, item.id, item.bucket)
            except Exception as exc:  # the report is refreshed by the visit's next update; the text is not held up
                log.warning("report update not enqueued for a text: %s", type(exc).__name__)
        return state

    def run_due(self) -> RunReport:
        """Send every pending item due now (and due within :data:`MAX_LOOKBACK`).

        Due items are found with one indexed query across the visits per page of :data:`PAGE_SIZE`
        (``OutboxRepository.due``), so the cost grows with the texts due, not with all the texts stored.
        After downtime the run catches up; texts about visits that have started are skipped, never sent.
        """
        now = self._clock.now()
        report = RunReport()
        paused: dict[str, datetime] = {}  # senders ACS answered 429 during this run
        for _page in range(MAX_PAGES):
            items = self._outbox.due(now, since=now - MAX_LOOKBACK, stale_before=now - STALE_SENDING, limit=PAGE_SIZE)
            report.queries += 1
            report.documents_read += len(items)
            outcomes = self._send_page(items, paused)
            for outcome in outcomes:
                report.count(outcome)
            # A full page may hide more due items; read on only while this page made progress (an item left
            # pending, e.g. rate-limited, would come back in the next page).
            if len(items) < PAGE_SIZE or not any(o in _PROGRESS for o in outcomes):
                break
        return report


def _planned_instant(item: OutboxItem) -> datetime:
    """The instant a reminder's quiet-hours check is made for: its due time, or for a retry (ACS 429, a
    connection refused, a repeat) the earlier attempt's claim, which was allowed when it was made."""
    if item.claimed_utc is not None and item.claimed_utc < item.due_utc:
        return item.claimed_utc
    return item.due_utc


def _skip_reason(
    item: OutboxItem, appointment: Appointment | None, environment: EnvironmentConfig | None, now: datetime
) -> str | None:
    if environment is None or not environment.sms.enabled or not environment.sms.sender:
        return "SMS is not enabled for this environment"
    if environment.disabled:  # switched off in the portal: no texts (docs/portal.md "Disabling an environment")
        return "the environment is disabled"
    if appointment is None:
        return "appointment no longer exists"
    if appointment.start_utc is None or appointment.start_utc <= now:
        return "appointment has already started"
    if item.kind in ("booked", "changed", "reminder"):
        if appointment.status != "booked":
            return f"appointment is {appointment.status}"
        if item.revision != appointment.schedule_revision:
            return "superseded by a newer schedule"
    return None


def _error_name(exc: Exception) -> str:
    """``struct.error``, ``KeyError``: the exception's type as an operator would search for it."""
    kind = type(exc)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
