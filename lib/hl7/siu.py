"""SIU (scheduling information unsolicited) reader: one message -> one :class:`SiuMessage`.

Rules and their sources (hl7.md sections):

- §1: route on MSH-9.1/MSH-9.2 only (MSH-9.3 ignored); the status follows the trigger event, not
  SCH-25 (vendors disagree on SCH-25; it is kept as a hint).
- §2: segments are located by ID anywhere (first SCH, first PID, first PV1, all TQ1/RGS/AIS/AIG/
  AIL/AIP in message order); EVN, NTE, OBX, DG1 and Z-segments are ignored; order is never checked.
- §3: appointment ID = first non-empty of the configured order (default SCH-2.1, SCH-1.1, PV1-19.1).
- §4/§5: start/end/duration and time zones, see :func:`parse_siu`.
- §6: SMS number (see :mod:`lib.hl7.phone`) and language PID-15 (any CWE component, see :mod:`lib.languages`).
- §7: department AIL-3 -> PV1-3 -> RGS-3; provider AIP-3 -> PV1-7.
- §10: values are unescaped (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\X..\\ \\.br\\``), see
  :func:`lib.hl7.er7.unescape`.

Privacy: the result holds identifiers, codes and times only: no patient name, birth date,
address or clinical text (docs/architecture.md "Privacy promise"). The phone number is the one PHI field kept.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from lib.hl7.er7 import Er7Message
from lib.hl7.errors import HL7Rejected
from lib.hl7.framing import unframe
from lib.hl7.header import MessageHeader, header_from_message
from lib.hl7.phone import choose_sms_phone
from lib.hl7.times import format_offset, parse_dtm, parse_duration, parse_duration_text, to_utc
from lib.hl7.wellformed import check_wellformed
from lib.languages import cwe_language
from lib.stored_settings import UnusableSetting

__all__ = ["STATUS_BY_EVENT", "SUPPORTED_VERSIONS", "SiuMessage", "parse_siu", "siu_from_message", "visit_times"]

#: Appointment status per trigger event (hl7.md §1): the event is authoritative, SCH-25 is a hint.
STATUS_BY_EVENT: dict[str, str] = {
    "S12": "booked",
    "S13": "booked",
    "S14": "booked",
    "S15": "cancelled",
    "S17": "deleted",
    "S26": "noshow",
}
_START_REQUIRED = frozenset({"S12", "S13", "S14"})
_ID_SOURCES = ("SCH-2", "SCH-1", "PV1-19")
_PROCESSING_IDS = frozenset({"P", "T", "D"})
#: MSH-12 versions read (docs/hl7-intake.md): from v2.3, where SCH-11 gained the TQ start/end components
#: and PID-13/14 the XTN use and equipment codes this reader relies on, to v2.9. v2.1 had no scheduling
#: messages and v2.2's SCH and XTN differ; those and any other value get AR 203.
SUPPORTED_VERSIONS: tuple[str, ...] = (
    "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9", "2.9.1",
)
_MIN_DIGITS = 10  # appointment times need at least hour precision (YYYYMMDDHH)


@dataclass(frozen=True, slots=True)
class SiuMessage:
    """What the intake keeps of one SIU message (no patient name, no clinical data).

    Attributes:
        header: the MSH segment (:class:`lib.hl7.header.MessageHeader`).
        event: trigger event MSH-9.2, one of S12 S13 S14 S15 S17 S26.
        status: from the event (not SCH-25): S12/S13/S14 ``booked``, S15 ``cancelled``,
            S17 ``deleted``, S26 ``noshow``.
        filler_status_hint: SCH-25.1 as sent (e.g. ``Booked``, ``5``, ``Cancelled``), or None.
        appointment_id: first non-empty of ``appointment_id_order`` (default SCH-2.1, SCH-1.1,
            PV1-19.1), sub-component 1, unescaped.
        appointment_id_source: which of those gave it: ``SCH-2``, ``SCH-1`` or ``PV1-19``.
        placer_id: SCH-1.1 (placer appointment ID) or None.
        filler_id: SCH-2.1 (filler appointment ID; Epic Cadence is the filler) or None.
        visit_number: PV1-19.1 (visit number) or None.
        conference_id: group-visit conference ID from the configured ``conference_id_field`` (first
            segment with that ID, first repetition, unescaped), or None (no field configured or empty).
        start_utc: appointment start, aware UTC datetime; None only for S15/S17/S26 without a start.
        end_utc: appointment end, aware UTC datetime, or None when neither an end nor a duration
            is given.
        duration_minutes: whole minutes (rounded) between start and end, or None.
        start_source: field the start came from (``TQ1-7``, ``SCH-11.4``, ``AIS-4``, ``AIG-8``,
            ``AIL-6``, ``AIP-6``) or None.
        source_time_zone: the IANA zone the start was localised in (no offset sent), or the sent
            fixed offset as ``+02:00``; None when there is no start.
        sms_phone_e164: the patient's SMS number in E.164 (PID-13/PID-40/PID-14), or None.
        sms_phone_reason: where the number came from or why there is none (never the number).
        language: the ISO 639-1 code PID-15 names (``SPA``, ``es-US``, ``Spanish``, ``^^^^Spanish`` -> ``es``), or None.
        department: AIL-3.1 (AIL-3.4 when .1 is empty), else PV1-3.1, else RGS-3.1; or None.
        department_name: component 2 of the field the department came from, or None.
        provider_ehr_id: AIP-3.1, else PV1-7.1 (first repetition); or None.
        visit_type: AIS-3.1, else SCH-8.1 (appointment type code); or None. Transient: it can name a
            procedure, so it is never stored (SCH-7, the free-text reason, is not read at all).
        phone_cleared: PID-13 or PID-14 is the HL7 null ``""`` and no SMS number was found: the sender
            deleted the number, so the stored one goes (an empty field leaves it as it is).
        language_note: PID-15 was sent but names no language we know: a note without PHI for the log (texts use
            the environment's default language); else None.
        offset_disagreement: when the start's ``+/-ZZZZ`` differs from the environment zone's offset at
            that instant, a note without PHI (field, both offsets) for the log; else None.
        patient_identifiers: CX.1 of every PID-3 repetition (the patient's identifiers: MRN, enterprise ID...),
            in order, without repeats. Transient: only a keyed hash of them is stored
            (:mod:`lib.scheduling.visit_identity`), to tell whether a message is about the visit's patient.
    """

    header: MessageHeader
    event: str
    status: str
    filler_status_hint: str | None
    appointment_id: str
    appointment_id_source: str
    placer_id: str | None
    filler_id: str | None
    visit_number: str | None
    conference_id: str | None
    start_utc: datetime | None
    end_utc: datetime | None
    duration_minutes: int | None
    start_source: str | None
    source_time_zone: str | None
    sms_phone_e164: str | None
    sms_phone_reason: str
    language: str | None
    department: str | None
    department_name: str | None
    provider_ehr_id: str | None
    visit_type: str | None
    phone_cleared: bool = False
    offset_disagreement: str | None = None
    language_note: str | None = None
    patient_identifiers: tuple[str, ...] = ()


class ConfigurationProblem(UnusableSetting):
    """The environment's settings cannot be used to read a message (stored by an older version, or edited in
    the store): not the message's fault, and resending will not help until an administrator fixes them. The
    intake checks the whole stored configuration first (:func:`lib.stored_settings.check_usable`); this is
    the reader's own guard, answered the same way (an ``AR`` naming the setting)."""


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        raise ConfigurationProblem("time_zone", f"unknown IANA time zone {name[:24]!r}") from exc


def _check_header(header: MessageHeader) -> str:
    """Validate the routing fields; return the trigger event (upper case)."""
    mtype = header.message_type.upper()
    if not mtype:
        raise HL7Rejected("MSH-9.1 message type is missing", "101", segment="MSH", field=9)
    if mtype != "SIU":
        raise HL7Rejected(
            "unsupported message type in MSH-9.1: only SIU scheduling messages are accepted",
            "200",
            segment="MSH",
            field=9,
        )
    event = header.trigger_event.upper()
    if not event:
        raise HL7Rejected("MSH-9.2 trigger event is missing", "101", segment="MSH", field=9)
    if event not in STATUS_BY_EVENT:
        raise HL7Rejected(
            "unsupported SIU event in MSH-9.2: accepted are S12, S13, S14, S15, S17 and S26",
            "201",
            segment="MSH",
            field=9,
        )
    if not header.control_id:
        raise HL7Rejected("MSH-10 message control ID is missing", "101", segment="MSH", field=10)
    pid = header.processing_id.upper()
    if not pid:
        raise HL7Rejected("MSH-11 processing ID is missing", "101", segment="MSH", field=11)
    if pid not in _PROCESSING_IDS:
        raise HL7Rejected(
            "unsupported processing ID in MSH-11: accepted are P, T and D", "202", segment="MSH", field=11
        )
    if not header.version:
        raise HL7Rejected("MSH-12 version ID is missing", "101", segment="MSH", field=12)
    if header.version not in SUPPORTED_VERSIONS:
        raise HL7Rejected(
            f"unsupported version {header.version[:20]!r} in MSH-12: supported are "
            f"{', '.join(SUPPORTED_VERSIONS)} (v2.1 and v2.2 scheduling fields differ)",
            "203",
            segment="MSH",
            field=12,
        )
    return event


@functools.lru_cache(maxsize=64)
def _configuration(
    time_zone: str, default_region: str, appointment_id_order: tuple[str, ...], conference_id_field: str | None
) -> tuple[ZoneInfo, str, tuple[str, ...], tuple[str, int, int] | None]:
    """Checked environment settings, once per distinct configuration: (zone, region, ID order, conference
    field address). Raises ValueError as documented in :func:`parse_siu`."""
    zone = _zone(time_zone)
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigurationProblem("default_region", f"unknown phone region {default_region[:10]!r}")
    if not appointment_id_order:
        raise ConfigurationProblem("appointment_id_order", "empty: name at least one of SCH-2, SCH-1, PV1-19")
    for item in appointment_id_order:
        if item not in _ID_SOURCES:
            raise ConfigurationProblem("appointment_id_order", f"{item[:12]!r} not {'/'.join(_ID_SOURCES)}")
    return zone, region, appointment_id_order, _field_address(conference_id_field) if conference_id_field else None


def _field_address(spec: str) -> tuple[str, int, int]:
    """``"SCH-4"`` -> ``("SCH", 4, 1)``; ``"ZCH-3.2"`` -> ``("ZCH", 3, 2)``.

    Raises:
        ValueError: not ``SEG-n`` or ``SEG-n.c`` with a three-character upper-case segment ID.
    """
    seg, _, rest = spec.strip().partition("-")
    field, _, comp = rest.partition(".")
    if (
        len(seg) != 3 or not (seg.isascii() and seg.isalnum() and seg.upper() == seg)
        or not field.isdigit() or int(field) < 1 or (comp and (not comp.isdigit() or int(comp) < 1))
    ):
        raise ConfigurationProblem("conference_id_field", f"{spec[:40]!r} is not shaped SEG-n or SEG-n.c (e.g. "
                                   "SCH-4, ZCH-3.1)")
    return seg, int(field), int(comp or 1)


def _first_value(msg: Er7Message, sid: str, field: int, comp: int = 1) -> tuple[str, list[str] | None]:
    for seg in msg.segments(sid):
        v = msg.value(seg, field, 1, comp)
        if v:
            return v, seg
    return "", None


class _Times:
    """Start/end/duration resolution (hl7.md §4)."""

    # (label, segment, start field, duration field, unit field)
    _RESOURCE = (
        ("AIS", 4, 7, 8),
        ("AIG", 8, 11, 12),
        ("AIL", 6, 9, 10),
        ("AIP", 6, 9, 10),
    )

    def __init__(self, msg: Er7Message, sch: list[str], zone: ZoneInfo, zone_name: str) -> None:
        self.msg = msg
        self.sch = sch
        self.zone = zone
        self.zone_name = zone_name
        self.bad_start: str | None = None
        self.sch11: list[str] = []

    def _utc(self, raw: str, label: str, is_start: bool) -> tuple[datetime, str, bool] | None:
        """(UTC instant, zone or offset text, written as midnight) of one time, or None."""
        dt = parse_dtm(raw, min_digits=_MIN_DIGITS)
        if dt is None:
            if is_start and self.bad_start is None:
                self.bad_start = label
            return None
        try:
            utc = to_utc(dt, self.zone)
        except (OverflowError, ValueError):
            if is_start and self.bad_start is None:
                self.bad_start = label
            return None
        midnight = dt.hour == 0 and dt.minute == 0 and dt.second == 0 and dt.microsecond == 0
        return utc, (self.zone_name if dt.tzinfo is None else format_offset(dt)), midnight

    def _start_candidates(self) -> Iterator[tuple[str, str, tuple[list[str], int, int] | None]]:
        """Every place a start can be, in order: TQ1-7, SCH-11.4, SCH-11.1, AIS-4, AIG-8, AIL-6, AIP-6."""
        msg, v, rv = self.msg, self.msg.value, self.msg.rep_value
        for tq1 in msg.segments("TQ1"):
            yield "TQ1-7", v(tq1, 7), None
        for rep in self.sch11:
            yield "SCH-11.4", rv(rep, 4), None
        for rep in self.sch11:
            # v2.3-era senders put the start (and end) in TQ.1/TQ.2; a quantity never parses as a time.
            yield "SCH-11.1", rv(rep, 1), None
        for sid, f_start, f_dur, f_unit in self._RESOURCE:
            for seg in msg.segments(sid):
                yield f"{sid}-{f_start}", v(seg, f_start), (seg, f_dur, f_unit)

    def resolve(self) -> tuple[datetime | None, datetime | None, int | None, str | None, str | None]:
        msg = self.msg
        v = msg.value
        tq1s = msg.segments("TQ1")
        sch = self.sch
        sch11 = self.sch11 = msg.repetitions(sch, 11)
        rv = msg.rep_value

        # The first start with a time of day wins; one written as exactly midnight is a date without a
        # time (resource segments often carry only the day) and is used only when no other start exists.
        start: tuple[datetime, str, bool] | None = None
        label: str | None = None
        resource: tuple[list[str], int, int] | None = None
        midnight: tuple[tuple[datetime, str, bool], str, tuple[list[str], int, int] | None] | None = None
        for where, raw, res in self._start_candidates():
            if not raw:
                continue
            found = self._utc(raw, where, where != "SCH-11.1")
            if found is None:
                continue
            if not found[2]:
                start, label, resource = found, where, res
                break
            if midnight is None:
                midnight = (found, where, res)
        if start is None and midnight is not None:
            start, label, resource = midnight
        if start is None:
            return None, None, None, None, None
        start_utc, tz_text, _ = start

        end_utc: datetime | None = None
        ends = [v(tq1, 8) for tq1 in tq1s] + [rv(rep, 5) for rep in sch11]
        if label == "SCH-11.1":
            ends += [rv(rep, 2) for rep in sch11]
        for raw in ends:
            if raw and (end := self._utc(raw, "end", False)) and end[0] >= start_utc:
                end_utc = end[0]
                break
        if end_utc is None:
            duration = self._duration(resource)
            if duration is not None:
                try:
                    end_utc = start_utc + duration
                except OverflowError:
                    end_utc = None
        minutes = None if end_utc is None else round((end_utc - start_utc).total_seconds() / 60)
        return start_utc, end_utc, minutes, label, tz_text

    def _duration(self, resource: tuple[list[str], int, int] | None) -> timedelta | None:
        msg, v, sch = self.msg, self.msg.value, self.sch
        for tq1 in msg.segments("TQ1"):
            # TQ1-13 occurrence duration, else TQ1-6 service duration (both CQ: quantity^units).
            for field in (13, 6):
                d = parse_duration(v(tq1, field), v(tq1, field, 1, 2))
                if d is not None:
                    return d
        for rep in self.sch11:
            d = parse_duration_text(msg.rep_value(rep, 3))
            if d is not None:
                return d
        d = parse_duration(v(sch, 9), v(sch, 10))
        if d is not None:
            return d
        if resource is not None:
            seg, f_dur, f_unit = resource
            d = parse_duration(v(seg, f_dur), v(seg, f_unit))
            if d is not None:
                return d
        for sid, _f_start, f_dur, f_unit in self._RESOURCE:
            for seg in msg.segments(sid):
                d = parse_duration(v(seg, f_dur), v(seg, f_unit))
                if d is not None:
                    return d
        return None


def _department(msg: Er7Message, pv1: list[str] | None) -> tuple[str | None, str | None]:
    v = msg.value
    for ail in msg.segments("AIL"):
        dept = v(ail, 3) or v(ail, 3, 1, 4)
        if dept:
            return dept, v(ail, 3, 1, 2) or None
    dept = v(pv1, 3)
    if dept:
        return dept, v(pv1, 3, 1, 2) or None
    for rgs in msg.segments("RGS"):
        dept = v(rgs, 3)
        if dept:
            return dept, v(rgs, 3, 1, 2) or None
    return None, None


def parse_siu(
    raw: bytes,
    *,
    time_zone: str,
    default_region: str,
    appointment_id_order: Sequence[str] = _ID_SOURCES,
    conference_id_field: str | None = None,
) -> SiuMessage:
    """Read one SIU^S12/S13/S14/S15/S17/S26 message into a :class:`SiuMessage`.

    Args:
        raw: request body, MLLP-framed or not, ``\\r``/``\\n``/``\\r\\n`` segment separators,
            character set per MSH-18 (utf-8 with cp1252 fallback when absent).
        time_zone: IANA zone of the sending facility (e.g. ``America/New_York``), used for times
            sent without an offset (hl7.md §5).
        default_region: ISO 3166 region for phone numbers without country code (e.g. ``US``).
        appointment_id_order: where to look for the appointment ID, first non-empty wins; items
            among ``"SCH-2"`` (filler), ``"SCH-1"`` (placer), ``"PV1-19"`` (visit number).
        conference_id_field: where a group visit's conference ID is carried, ``SEG-n`` or ``SEG-n.c``
            (e.g. ``SCH-4``, ``ZCH-3.1``; hl7.md §9: no standard field, Epic's ZCH is site-specific);
            None = no conference ID.

    Times (hl7.md §4): the start is the first that parses of TQ1-7, SCH-11.4 (any repetition),
    AIS-4, AIG-8, AIL-6, AIP-6 (component 1 only, so a TS degree-of-precision component is
    ignored; at least hour precision). The end is TQ1-8, else SCH-11.5, when not before the start;
    otherwise start + the first duration of TQ1-13, SCH-11.3 text (``M30``, ``60``), SCH-9/SCH-10,
    the duration of the resource segment that gave the start, then AIS-7/8, AIG-11/12, AIL-9/10,
    AIP-9/10. Units: minutes (default), seconds, hours (:func:`lib.hl7.times.parse_duration`).
    A time with ``+/-ZZZZ`` is an instant; without it is wall-clock time in ``time_zone`` with
    ``fold=0``: a nonexistent time (spring-forward gap) is shifted forward by the gap (02:30 ->
    03:30 local), an ambiguous time (fall-back) is the FIRST occurrence.

    Returns:
        The :class:`SiuMessage`.

    Raises:
        NotHL7: no MSH segment / broken framing (answer with an HTTP problem, no ACK possible).
        HL7Rejected: with HL7 table 0357 codes: 200 MSH-9.1 not SIU; 201 event not supported
            (e.g. S16); 202 MSH-11 not P/T/D; 203 MSH-12 not 2.x; 101 MSH-9/10/11/12 missing, no SCH
            segment, no appointment ID, or no start time for S12/S13/S14; 102 unusable MSH-2, or a
            start time present but not a valid date/time (S12/S13/S14).
        ConfigurationProblem: (a ``ValueError``) configuration errors: unknown ``time_zone``,
            ``default_region`` or ``appointment_id_order`` item, an empty ``appointment_id_order``, or a
            ``conference_id_field`` not shaped ``SEG-n[.c]``.
    """
    msg = Er7Message.from_bytes(unframe(raw))
    return siu_from_message(
        msg, header_from_message(msg), time_zone=time_zone, default_region=default_region,
        appointment_id_order=appointment_id_order, conference_id_field=conference_id_field,
    )


def siu_from_message(
    msg: Er7Message,
    header: MessageHeader,
    *,
    time_zone: str,
    default_region: str,
    appointment_id_order: Sequence[str] = _ID_SOURCES,
    conference_id_field: str | None = None,
) -> SiuMessage:
    """:func:`parse_siu` on a message already decoded (:func:`lib.hl7.header.read_message`) and its MSH
    (``header_from_message(msg)``), so the intake decodes each body once. Same rules, result and errors."""
    zone, region, appointment_id_order, conference_at = _configuration(
        time_zone, default_region, tuple(appointment_id_order), conference_id_field
    )
    if msg.problem is not None:
        raise msg.problem
    check_wellformed(msg)
    event = _check_header(header)

    sch = msg.first("SCH")
    if sch is None:
        raise HL7Rejected("the SCH segment is missing (required in SIU messages)", "101", segment="SCH")
    pid = msg.first("PID")
    pv1 = msg.first("PV1")
    v = msg.value

    named = {"SCH-2": _named_ids(msg, sch, 2), "SCH-1": _named_ids(msg, sch, 1), "PV1-19": _named_ids(msg, pv1, 19)}
    for item in appointment_id_order:
        _check_single_id(named[item], item)
    filler, placer, visit = (next(iter(named[source]), None) for source in ("SCH-2", "SCH-1", "PV1-19"))
    by_source = {"SCH-2": filler, "SCH-1": placer, "PV1-19": visit}
    appointment_id = source = None
    for item in appointment_id_order:
        if by_source[item]:
            appointment_id, source = by_source[item], item
            break
    if appointment_id is None or source is None:
        raise HL7Rejected(
            "no appointment ID: " + ", ".join(appointment_id_order) + " are all empty",
            "101",
            segment="SCH",
            field=2,
        )

    times = _Times(msg, sch, zone, time_zone)
    start_utc, end_utc, minutes, start_source, tz_text = times.resolve()
    if start_utc is None and event in _START_REQUIRED:
        if times.bad_start is not None:
            seg_id, _, fld = times.bad_start.partition("-")
            raise HL7Rejected(
                f"the appointment start time in {times.bad_start} is not a valid HL7 date/time (at least YYYYMMDDHH)",
                "102",
                segment=seg_id,
                field=int(fld.split(".")[0]),
            )
        raise HL7Rejected(
            "no appointment start time in TQ1-7, SCH-11.4, AIS-4, AIG-8, AIL-6 or AIP-6",
            "101",
            segment="SCH",
            field=11,
        )

    phone = choose_sms_phone(msg, pid, region)
    # HL7 "" (explicit null) in PID-13 or PID-14 deletes the stored number; an empty field changes nothing.
    phone_cleared = phone.e164 is None and any(msg.raw(pid, f).strip() == '""' for f in (13, 14))
    language, language_note = cwe_language([v(pid, 15, 1, c) for c in range(1, 6)])
    department, department_name = _department(msg, pv1)
    provider = _first_value(msg, "AIP", 3)[0] or v(pv1, 7) or None
    visit_type = _first_value(msg, "AIS", 3)[0] or v(sch, 8) or None

    return SiuMessage(
        header=header,
        event=event,
        status=STATUS_BY_EVENT[event],
        filler_status_hint=v(sch, 25) or None,
        appointment_id=appointment_id,
        appointment_id_source=source,
        placer_id=placer,
        filler_id=filler,
        visit_number=visit,
        conference_id=(v(msg.first(conference_at[0]), conference_at[1], 1, conference_at[2]) or None)
        if conference_at
        else None,
        start_utc=start_utc,
        end_utc=end_utc,
        duration_minutes=minutes,
        start_source=start_source,
        source_time_zone=tz_text,
        sms_phone_e164=phone.e164,
        sms_phone_reason=phone.reason,
        language=language,
        department=department,
        department_name=department_name,
        provider_ehr_id=provider,
        visit_type=visit_type,
        phone_cleared=phone_cleared,
        offset_disagreement=_offset_disagreement(start_utc, tz_text, start_source, zone, time_zone),
        language_note=language_note,
        patient_identifiers=tuple(dict.fromkeys(
            value for rep in msg.repetitions(pid, 3) if (value := msg.rep_value(rep, 1)))),
    )


def _named_ids(msg: Er7Message, seg: list[str] | None, field: int) -> tuple[str, ...]:
    """The distinct IDs (component 1) the repetitions of an ID field name, in order; empty repetitions and the
    HL7 null skipped, so ``~X1`` and ``X1~`` name ``X1``."""
    return tuple(dict.fromkeys(value for rep in msg.repetitions(seg, field) if (value := msg.rep_value(rep, 1))))


def _check_single_id(named: tuple[str, ...], source: str) -> None:
    """Refuse an appointment ID field that names several appointments (``X~Y``).

    SCH-1, SCH-2 (EI) and PV1-19 (CX) do not repeat (v2.5 chapter 10, chapter 3): the visit's identity would
    depend on which repetition is read, so a cancel listing the same IDs in another order would miss the
    visit. Empty repetitions (``X~``) name one appointment and are read as it.

    Raises:
        HL7Rejected: ``AR`` 102 at the field.
    """
    if len(named) > 1:
        segment, _, field = source.partition("-")
        raise HL7Rejected(
            f"{source} holds {len(named)} appointment IDs (repetitions separated by '~'); it identifies one "
            "appointment and does not repeat: send one ID",
            "102", segment=segment, field=int(field),
        )


def _offset_disagreement(
    start_utc: datetime | None, tz_text: str | None, label: str | None, zone: ZoneInfo, zone_name: str
) -> str | None:
    """A PHI-free note when the start carries an offset other than the environment zone's at that instant
    (a sender in another zone, or a zone configured wrong), else None."""
    if start_utc is None or tz_text is None or tz_text == zone_name:
        return None
    local = start_utc.astimezone(zone)
    expected = format_offset(local)
    if expected == tz_text:
        return None
    return f"{label} offset {tz_text} differs from {zone_name} ({expected} at that time)"


def visit_times(msg: Er7Message, time_zone: str) -> tuple[datetime | None, datetime | None]:
    """(start, end) in UTC of a message's visit, by the same rules as :func:`parse_siu` (hl7.md §4), without
    checking anything else; ``(None, None)`` when no start parses (:mod:`lib.hl7.salvage` reads refused messages
    with it).

    Raises:
        ConfigurationProblem: ``time_zone`` is not an IANA zone.
    """
    start, end, _minutes, _label, _zone_text = _Times(msg, msg.first("SCH") or [], _zone(time_zone),
                                                      time_zone).resolve()
    return start, end
