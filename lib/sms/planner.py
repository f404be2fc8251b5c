"""Which texts an appointment change calls for: pure decisions, no I/O.

Texts are unique per (appointment, kind, schedule revision); reminder kinds carry their offset
(``reminder-1440``). Confirmations are due at once; reminders at start minus each configured offset in
elapsed time (1440 minutes before is 24 real hours before, whatever DST does to the wall clock), and only
when that moment is still ahead (a reminder that would fall before the booking is not planned).

Quiet hours (``lib/sms/quiet_hours.py``) apply to reminders in the patient's zone: a reminder falling inside
is moved earlier to the start of that quiet window, or not planned when that moment is already past. Two
reminders moved to the same instant become one (the first offset configured). Confirmations answer a
scheduling action and go at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from lib.models import Appointment, OutboxItem, SmsSettings, hour_bucket
from lib.sms.quiet_hours import last_allowed_before


@dataclass(frozen=True)
class SmsPlan:
    """Texts to create, and the still-pending reminders of ``cancel`` (``{"id", "bucket"}``) to skip."""

    create: tuple[OutboxItem, ...]
    cancel: tuple[dict[str, str], ...]


def outbox_id(appointment_key: str, kind: str, revision: int) -> str:
    """The outbox ID of one text: ``{appointmentKey}|{kind}|{revision}``."""
    return f"{appointment_key}|{kind}|{revision}"


def _item(appointment: Appointment, kind: str, due: datetime) -> OutboxItem:
    return OutboxItem(
        id=outbox_id(appointment.key, kind, appointment.schedule_revision),
        bucket=hour_bucket(due),
        appointment_key=appointment.key,
        environment_id=appointment.environment_id,
        kind="reminder" if kind.startswith("reminder") else kind,  # type: ignore[arg-type]
        revision=appointment.schedule_revision,
        due_utc=due,
    )


def plan_texts(
    sms: SmsSettings,
    before: Appointment | None,
    after: Appointment,
    *,
    has_phone: bool,
    now: datetime,
    time_zone: str | None = None,
) -> SmsPlan:
    """Plan the texts for the change ``before`` -> ``after`` (``before`` is ``None`` for a new booking).

    Nothing is planned when SMS is off for the environment, there is no SMS number, or the appointment has
    already started. Pending reminders of an earlier revision, or of an appointment that is no longer
    booked, are returned in ``cancel``.

    Args:
        time_zone: the patient's IANA zone (the environment's), for quiet hours; ``None`` applies none
            (the intake always passes it).
    """
    stale_reminders = tuple(
        ref
        for ref in after.outbox_refs
        if "|reminder-" in ref["id"]
        and (after.status != "booked" or not ref["id"].endswith(f"|{after.schedule_revision}"))
    )
    if not sms.enabled or not has_phone or after.start_utc is None or after.start_utc <= now:
        return SmsPlan(create=(), cancel=stale_reminders)

    create: list[OutboxItem] = []
    newly_booked = after.status == "booked" and (before is None or before.status != "booked")
    moved = (
        after.status == "booked"
        and before is not None
        and before.status == "booked"
        and after.schedule_revision != before.schedule_revision
    )
    if after.status == "booked":
        if newly_booked and sms.confirm_booked:
            create.append(_item(after, "booked", now))
        elif moved and sms.confirm_changed:
            create.append(_item(after, "changed", now))
        if newly_booked or moved or before is None:
            planned: set[datetime] = set()
            for offset in sms.reminder_offsets_minutes:
                due = after.start_utc - timedelta(minutes=offset)
                if time_zone is not None:
                    due = last_allowed_before(due, time_zone, sms.quiet_hours)
                if due > now and due not in planned:
                    planned.add(due)
                    create.append(_item(after, f"reminder-{offset}", due))
    elif after.status in ("cancelled", "deleted") and before is not None and before.status == "booked" and (
        sms.confirm_cancelled
    ):
        create.append(_item(after, "cancelled", now))
    return SmsPlan(create=tuple(create), cancel=stale_reminders)
