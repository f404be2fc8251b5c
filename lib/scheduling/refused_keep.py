"""Which visit a refused message belongs to, and how long its raw bytes may be kept.

A refused message is kept raw (container ``rejected``) so an operator can replay it, and those bytes may hold
the patient's phone number. The rules (docs/hl7-intake.md, "What is kept"):

1. The visit is read best-effort (:func:`lib.hl7.salvage.read_refused`), whatever made the message
   unacceptable. When it names an appointment ID, the kept message is tied to that visit's key and the intake
   deletes it with the visit's number: cancel, delete, no-show, the sender nulling PID-13/14, a late message
   for a visit already over.
2. When the visit's end (else its start) can be read, the message goes when the visit is over: that time plus
   the environment's phone grace period (the purge timer reads ``delete_after``), and never later than the
   container's TTL. When the visit is already stored, what is stored decides first: a visit cancelled, deleted
   or a no-show, or already over, has lost its number, and the message goes at once (``delete_after`` = now:
   the purge timer's next run); a stored end stands in for one the message does not give.
3. When no end can be read but PID-13/PID-14/PID-40 hold something phone-like, it goes after
   :data:`PHONE_KEEP` (3 days: a weekend plus a working day for an operator to replay it), tied or not.
4. Otherwise the container's TTL (``HL7_REJECTED_TTL_DAYS``, 30 days by default) applies.

For an environment that does not exist yet, the default appointment ID order is used (the key then matches the
environment created later with the default order), and times without an offset are read as UTC and given
:data:`UNKNOWN_ZONE_MARGIN` more (no zone is known: UTC-12 to UTC+14 covers every zone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from lib.hl7.salvage import DEFAULT_ID_ORDER, read_refused
from lib.models import ENDED_STATUSES, Appointment, EnvironmentConfig, SmsSettings, appointment_key

__all__ = ["PHONE_KEEP", "UNKNOWN_ZONE_MARGIN", "KeepTerms", "keep_terms"]

#: Longest keep of a refused message that holds something phone-like but whose visit's end is unknown.
PHONE_KEEP = timedelta(days=3)
#: Added to a visit's end read without a known zone (an environment that does not exist yet).
UNKNOWN_ZONE_MARGIN = timedelta(hours=14)


@dataclass(frozen=True, slots=True)
class KeepTerms:
    """``appointment_key``: the visit the kept message is purged with (None: none readable);
    ``delete_after``: when it goes at the latest (None: the container's TTL)."""

    appointment_key: str | None
    delete_after: datetime | None


def keep_terms(
    environment_id: str, environment: EnvironmentConfig | None, raw: bytes, now: datetime, *,
    stored: Callable[[str], Appointment | None] | None = None,
) -> KeepTerms:
    """The terms under which the refused ``raw`` body is kept (rules in the module docstring). ``stored`` reads
    the stored appointment of a key (None when it cannot be read: the message alone then decides)."""
    if environment is not None:
        visit = read_refused(raw, appointment_id_order=environment.appointment_id_order,
                             time_zone=environment.time_zone)
        grace = timedelta(minutes=environment.sms.phone_grace_minutes)
    else:
        visit = read_refused(raw, appointment_id_order=DEFAULT_ID_ORDER, time_zone="UTC")
        grace = timedelta(minutes=SmsSettings().phone_grace_minutes) + UNKNOWN_ZONE_MARGIN
    key = appointment_key(environment_id, visit.appointment_id) if visit.appointment_id else None
    end = visit.end_utc or visit.start_utc
    known = stored(key) if key is not None and stored is not None else None
    if known is not None:
        known_end = known.end_utc or known.start_utc
        if known.status in ENDED_STATUSES or (known_end is not None and known_end + grace <= now):
            return KeepTerms(key, now)
        end = end or known_end
    if end is not None:
        return KeepTerms(key, end + grace)
    return KeepTerms(key, now + PHONE_KEEP if visit.phone_like else None)
