"""Apply one SIU message to the stored appointment: pure decisions, no I/O.

Ordering rule: a message is applied only if its order key (MSH-7, then MSH-10 on a tie: see
:mod:`lib.scheduling.ordering`) is newer than the one the appointment last applied. The same key again is a
redelivery: nothing changes but its side effects are re-run (they are idempotent). So a cancel or delete is
never undone by an older S12/S14 arriving late, whatever order the feed delivers in.

Lifecycle rule (HL7 v2.5 ch. 10): S12 books (a newer S12 for a cancelled, deleted or no-show appointment ID
books it again: the documented way to reinstate), S13 reschedules and S14 modifies a booked appointment.
SIU has no "reinstate" event, so an S13/S14 about a cancelled, deleted or no-show visit keeps it so: what it
changes (times, department, provider...) is stored, no schedule revision is started, no text is planned and
no number is kept. SCH-25 (filler status) is read as a hint only and never books a visit again.

Phone rule ("kept only until the visit"): the number of a visit is kept only while the visit is booked and
still ahead. A cancel (S15), delete (S17) or no-show (S26) removes it at once (a cancellation text due now
keeps it until that text is done, at most ``CANCEL_NOTICE_WINDOW``), in whichever order the
messages arrive (a late, older booking is stale and stores nothing); a cancel that arrives before its
booking leaves a tombstone without a number; an HL7 null (``""``) in PID-13/14 removes it; a visit already
over when its message arrives is stored minimally, with a short ``ttl``, no number and no texts.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from lib.models import Appointment
from lib.scheduling.ordering import OrderKey, compare, order_key
from lib.scheduling.visit_identity import IdentityConflict, MessageIdentity, identity_conflict, stored_identity

__all__ = ["ENDED", "Applied", "SiuFields", "apply_message", "forgets_phone", "keeps_phone", "order_key", "visit_over"]

Outcome = Literal["created", "updated", "redelivered", "stale", "conflict"]


class SiuFields(Protocol):
    """What this module reads from a parsed SIU message (``lib.hl7.siu.SiuMessage``)."""

    appointment_id: str
    event: str
    status: str
    start_utc: datetime | None
    end_utc: datetime | None
    duration_minutes: int | None
    source_time_zone: str | None
    department: str | None
    provider_ehr_id: str | None
    language: str | None
    sms_phone_reason: str
    sms_phone_e164: str | None
    phone_cleared: bool
    conference_id: str | None
    placer_id: str | None
    filler_id: str | None
    visit_number: str | None


#: Statuses of a visit that will not take place; only a newer S12 books it again.
ENDED = frozenset({"cancelled", "deleted", "noshow"})
#: Events that change a booked appointment without booking it (S13 reschedule, S14 modification).
_CHANGES = frozenset({"S13", "S14"})

#: How long a visit that was already over when its message arrived is kept (ordering and tombstone only).
PAST_VISIT_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Applied:
    """The result of :func:`apply_message`.

    ``before`` is the stored appointment (``None`` when new), ``after`` the one to store (``None`` when
    the message is stale), ``time_changed`` whether the start moved (a new schedule revision);
    ``kept_ended`` an S13/S14 changed a cancelled, deleted or no-show visit without booking it again;
    ``conflict`` why the message may not change the stored visit (outcome ``conflict``: another sender or
    another patient, :mod:`lib.scheduling.visit_identity`), the message is refused.
    """

    outcome: Outcome
    before: Appointment | None
    after: Appointment | None
    time_changed: bool
    kept_ended: bool = False
    conflict: IdentityConflict | None = None


def visit_over(appointment: Appointment, now: datetime) -> bool:
    """Whether the visit has ended (its end, else its start, is not after ``now``)."""
    last = appointment.end_utc or appointment.start_utc
    return last is not None and last <= now


def forgets_phone(after: Appointment, message: SiuFields) -> bool:
    """Whether the stored number of the visit must go now (see the module docstring)."""
    return after.status != "booked" or message.phone_cleared or after.ttl is not None


def keeps_phone(after: Appointment, message: SiuFields) -> str | None:
    """The number to store for the visit after ``message``: the message's, unless the visit forgets it."""
    return None if forgets_phone(after, message) else message.sms_phone_e164


def apply_message(
    existing: Appointment | None, message: SiuFields, *, environment_id: str, key: str, now: datetime | None = None,
    new_link_id: str | None = None, identity: MessageIdentity | None = None, bound_facilities: tuple[str, ...] = (),
) -> Applied:
    """Decide what ``message`` (with ordering key ``key``) does to ``existing``.

    Times missing from a cancel/no-show message keep the stored ones. A newer S12 after a cancel, delete or
    no-show books the appointment again with a new schedule revision; a newer S13/S14 does not (module
    docstring). With ``now``, a visit already over gets :data:`PAST_VISIT_TTL_SECONDS` as its ``ttl`` (and
    loses it when a later message moves it ahead). A new appointment gets ``new_link_id`` as its join-link ID
    (the message's partition, so that its link is recorded with the message: ``lib.store.messages``), or a
    random one. With ``identity`` (the message's sender and patient), a message about another sender's or
    another patient's visit is a ``conflict`` and changes nothing (``bound_facilities``: the environment's
    sending facilities, one feed whose members may change each other's visits); the visit records the identity
    of the messages applied to it.
    """
    if existing is not None and identity is not None:
        conflict = identity_conflict(existing, identity, bound_facilities=bound_facilities)
        if conflict is not None:
            return Applied("conflict", existing, None, time_changed=False, conflict=conflict)
    applied = _apply(existing, message, environment_id=environment_id, key=key, new_link_id=new_link_id)
    if applied.after is not None and applied.outcome != "redelivered":
        sender, refs = stored_identity(existing, identity) if identity is not None else (
            applied.after.sender, applied.after.patient_refs)
        other_ids = dict(existing.other_ids) if existing is not None else {}
        other_ids.update((source, value) for source, value in (
            ("SCH-2", message.filler_id), ("SCH-1", message.placer_id), ("PV1-19", message.visit_number)) if value)
        applied = dataclasses.replace(applied, after=dataclasses.replace(
            applied.after, sender=sender, patient_refs=refs, other_ids=other_ids))
    if now is None or applied.after is None or applied.outcome == "redelivered":
        return applied
    ttl = PAST_VISIT_TTL_SECONDS if visit_over(applied.after, now) else None
    if ttl == applied.after.ttl:
        return applied
    return dataclasses.replace(applied, after=dataclasses.replace(applied.after, ttl=ttl))


def _apply(
    existing: Appointment | None, message: SiuFields, *, environment_id: str, key: str, new_link_id: str | None
) -> Applied:
    if existing is not None:
        if key == existing.order_key:
            return Applied("redelivered", existing, existing, time_changed=False)
        if _older(key, message, existing):
            return Applied("stale", existing, None, time_changed=False)

    start = message.start_utc or (existing.start_utc if existing else None)
    end = message.end_utc or (existing.end_utc if existing else None)
    duration = message.duration_minutes or (existing.duration_minutes if existing else None)
    if existing is None:
        return Applied(
            "created",
            None,
            Appointment(
                environment_id=environment_id,
                appointment_id=message.appointment_id,
                status=message.status,  # type: ignore[arg-type]
                start_utc=start,
                end_utc=end,
                duration_minutes=duration,
                source_time_zone=message.source_time_zone,
                department=message.department,
                provider_ehr_id=message.provider_ehr_id,
                language=message.language,
                order_key=key,
                schedule_revision=1,
                link_id=new_link_id or secrets.token_urlsafe(16),
                sms_phone_reason=message.sms_phone_reason,
                conference_id=message.conference_id,
            ),
            time_changed=True,
        )

    kept_ended = existing.status in ENDED and message.event in _CHANGES
    status = existing.status if kept_ended else message.status
    # A visit that stays cancelled, deleted or a no-show starts no schedule revision: nothing is announced.
    time_changed = start != existing.start_utc and not (existing.status in ENDED and status in ENDED)
    # A record opened by a launch before any SIU (empty order key) gets its first schedule revision now.
    rebooked = (existing.status != "booked" or not existing.order_key) and status == "booked"
    after = dataclasses.replace(
        existing,
        status=status,  # type: ignore[arg-type]
        start_utc=start,
        end_utc=end,
        duration_minutes=duration,
        source_time_zone=message.source_time_zone or existing.source_time_zone,
        department=message.department or existing.department,
        provider_ehr_id=message.provider_ehr_id or existing.provider_ehr_id,
        language=message.language or existing.language,
        order_key=key,
        schedule_revision=existing.schedule_revision + (1 if time_changed or rebooked else 0),
        sms_phone_reason=message.sms_phone_reason or existing.sms_phone_reason,
        outbox_refs=list(existing.outbox_refs),
        conference_id=message.conference_id or existing.conference_id,
    )
    return Applied("updated", existing, after, time_changed=time_changed or rebooked, kept_ended=kept_ended)


def _older(key: str, message: SiuFields, existing: Appointment) -> bool:
    """Whether the message with ``key`` is older than the one ``existing`` last applied (parsed keys)."""
    new, stored = OrderKey.parse(key), OrderKey.parse(existing.order_key)
    if new is None or stored is None:
        return False  # a stored key that cannot be read never blocks a message (none is written that way)
    return compare(new, message.status in ENDED, stored, existing.status in ENDED) < 0
