"""The rules of single configuration fields, as pydantic-readable types (``Annotated`` validators).

:class:`lib.models.EnvironmentConfig` and :class:`lib.models.SmsSettings` declare their fields with these
types, so every path that validates a configuration with pydantic (the portal's form and its JSON API, through
``lib.config.environments.STORED``) refuses a bad value with the field's own message. Rules that need several
fields or the network (FHIR URLs, approvers, SMS templates) stay in :mod:`lib.config.environments`.

Plain functions (``*_problem``) are exported too, for code that checks a stored value before use.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Strict

#: Where an appointment ID may come from in an SIU message (docs/hl7-intake.md).
APPOINTMENT_ID_SOURCES = ("SCH-2", "SCH-1", "PV1-19")
_ORIGIN = re.compile(r"https://[a-z0-9.-]+(:[0-9]{1,5})?|http://(localhost|127\.0\.0\.1)(:[0-9]{1,5})?")
_ZONE = re.compile(r"[A-Za-z0-9_+-]{1,30}(/[A-Za-z0-9_+-]{1,30}){0,2}")
#: Most frame origins one environment lists.
MAX_FRAME_ORIGINS = 20
#: Bounds of the whole-number settings.
VISITS_PER_MONTH_MAX = 10_000_000
REMINDER_MINUTES_MAX = 30 * 1440
#: Bounds of the per-number cap: texts, and the window in hours (30 days); docs/portal.md "SMS".
PER_NUMBER_CAP_MAX = 50
PER_NUMBER_WINDOW_HOURS_MAX = 720


def _has_control(text: str) -> bool:
    return any(not ch.isprintable() for ch in text)


# ---- appointment ID fields -------------------------------------------------------------------------------------
def appointment_id_order(values: Any) -> tuple[str, ...]:
    """``values`` as the ordering of appointment ID fields: spacing and case forgiven (`` sch-2 ``), every
    entry one of ``SCH-2``, ``SCH-1``, ``PV1-19``, at least one, none twice.

    Raises:
        ValueError: with the portal's message.
    """
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise ValueError("list the appointment ID fields, one per line")
    out: list[str] = []
    for value in values:
        item = re.sub(r"\s+", "", value).upper()
        if item not in APPOINTMENT_ID_SOURCES:
            raise ValueError(f"'{value[:40]}' is not an appointment ID field: use SCH-2, SCH-1 or PV1-19, one per "
                             "line, in order of preference")
        if item in out:
            raise ValueError(f"{item} is listed twice: name each appointment ID field once")
        out.append(item)
    if not out:
        raise ValueError("name at least one appointment ID field (SCH-2, SCH-1 or PV1-19)")
    return tuple(out)


# ---- frame origins ---------------------------------------------------------------------------------------------
def frame_origin_problem(value: str) -> str | None:
    """Why ``value`` cannot be a frame origin, or ``None`` when it can.

    An origin is ``https://host[:port]``, lower case, no path, no wildcard (``http://localhost`` and
    ``http://127.0.0.1`` are accepted for local development).
    """
    if not isinstance(value, str) or not _ORIGIN.fullmatch(value):
        return ("a frame origin is https://host or https://host:port, lower case, without a path, a trailing slash "
                "or a wildcard (e.g. https://epic.contoso.org)")
    return None


def frame_origins(values: tuple[str, ...]) -> tuple[str, ...]:
    """``values`` when every entry is a frame origin (:func:`frame_origin_problem`), at most 20."""
    if len(values) > MAX_FRAME_ORIGINS:
        raise ValueError(f"list at most {MAX_FRAME_ORIGINS} frame origins")
    for value in values:
        problem = frame_origin_problem(value)
        if problem:
            raise ValueError(f"'{value[:60]}': {problem}")
    return values


# ---- whole numbers ---------------------------------------------------------------------------------------------
def _whole_number(low: int, high: int, unit: str) -> BeforeValidator:
    """A validator reading a whole number from ``low`` to ``high``: a JSON integer only (the portal's form
    turns its digits into one first, :func:`lib.config.forms.parse_form`); never a string, a boolean, a
    fraction or an exponent (``1e3`` is a JSON float), as docs/portal.md says."""
    message = f"use a whole number of {unit} from {low} to {high}"

    def read(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(message)
        return value

    return BeforeValidator(read)


# ---- HL7 sending facilities ----------------------------------------------------------------------------------
#: Most MSH-4 values one environment can be bound to, and the longest one.
MAX_SENDING_FACILITIES = 20
MAX_SENDING_FACILITY_CHARS = 180


def sending_facilities_problem(values: Any) -> str | None:
    """Why ``values`` cannot be an environment's ``hl7_sending_facilities`` (``None`` when they can): a list
    of at most 20 entries, each 1 to 180 printable ASCII characters without surrounding spaces or an HL7
    delimiter other than ``^`` (``|~\\&``), none repeated (case-insensitively). The message names the
    entry's position ("entry 2: ...")."""
    if not isinstance(values, tuple) or not all(isinstance(v, str) for v in values):
        return "must be a list of text values"
    if len(values) > MAX_SENDING_FACILITIES:
        return f"at most {MAX_SENDING_FACILITIES} sending facilities"
    seen: set[str] = set()
    for position, value in enumerate(values, start=1):
        text = value.strip()
        if not text or len(text) > MAX_SENDING_FACILITY_CHARS:
            return f"entry {position}: 1 to {MAX_SENDING_FACILITY_CHARS} characters"
        if text != value or not all(" " <= c <= "~" for c in text) or any(c in "|~\\&" for c in text):
            return (f"entry {position}: printable characters without surrounding spaces and without | ~ \\ & "
                    "(components are joined by ^, as in MSH-4)")
        if text.upper() in seen:
            return f"entry {position} repeats an earlier entry"
        seen.add(text.upper())
    return None


def _sending_facilities(values: tuple[str, ...]) -> tuple[str, ...]:
    problem = sending_facilities_problem(values)
    if problem:
        raise ValueError(problem)
    return values


# ---- text ------------------------------------------------------------------------------------------------------
def time_zone_problem(name: Any) -> str | None:
    """Why ``name`` is not an IANA time zone we can load (checked by shape first: a long or odd name makes
    ``zoneinfo`` raise ``OSError``), or ``None``."""
    shown = str(name)[:40] + ("..." if len(str(name)) > 40 else "")
    if not isinstance(name, str) or not _ZONE.fullmatch(name):
        return f"'{shown}' is not an IANA time zone such as America/Chicago"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"'{shown}' is not an IANA time zone such as America/Chicago"
    return None


def _time_zone(name: str) -> str:
    problem = time_zone_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def display_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the organization's name in texts and pages: 1 to 80 characters, on one line,
    without control characters."""
    if not name.strip() or len(name) > 80:
        return "enter the organization's name as patients know it (1 to 80 characters)"
    if _has_control(name):
        return "the organization name must be one line without control characters (no line breaks or tabs)"
    return None


def _display_name(name: str) -> str:
    problem = display_name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def _vendor_name(name: str) -> str:
    if not name.strip() or len(name) > 64 or _has_control(name):
        raise ValueError("the vendor name sent to Epic is 1 to 64 characters on one line, without control "
                         "characters (e.g. OpenVirtualVisits)")
    return name


#: A switch: JSON ``true`` or ``false`` only (not ``"yes"``, ``1`` or ``"on"``: the form sends booleans).
Flag = Annotated[bool, Strict()]
AppointmentIdOrder = Annotated[tuple[str, ...], AfterValidator(appointment_id_order)]
FrameOrigins = Annotated[tuple[str, ...], AfterValidator(frame_origins)]
SendingFacilities = Annotated[tuple[str, ...], AfterValidator(_sending_facilities)]
TimeZoneName = Annotated[str, AfterValidator(_time_zone)]
DisplayName = Annotated[str, AfterValidator(_display_name)]
VendorName = Annotated[str, AfterValidator(_vendor_name)]
HorizonMinutes = Annotated[int, _whole_number(5, 7 * 1440, "minutes")]
VisitsPerMonth = Annotated[int, _whole_number(0, VISITS_PER_MONTH_MAX, "visits")]
EncryptedMaxAge = Annotated[int, _whole_number(1, 3600, "seconds")]
ReminderMinutes = Annotated[int, _whole_number(1, REMINDER_MINUTES_MAX, "minutes before the visit")]
SmsRate = Annotated[int, _whole_number(1, 1_000_000, "texts a minute")]
GraceMinutes = Annotated[int, _whole_number(0, 30 * 1440, "minutes")]
PerNumberCap = Annotated[int, _whole_number(0, PER_NUMBER_CAP_MAX, "texts (0: no limit)")]
WindowHours = Annotated[int, _whole_number(1, PER_NUMBER_WINDOW_HOURS_MAX, "hours")]
