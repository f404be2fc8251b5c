"""Keeps the report documents up to date from ``report-updates`` messages (queue-triggered, at least once).

For each message: read the visit's report document, merge what changed (re-reading the appointment or the
outbox item, which are the truth, or adding the roster event / media streams the message carries), derive the
row, write the document back (ETag-guarded, retried on a race), then put the visit's row and its texts' rows
into their day sheets. Every merge is a set by ID, and a sheet row is only replaced by a row of a newer
document version, so a redelivered, duplicated or out-of-order message changes nothing twice, and a process
that dies between the two writes is completed by the redelivery.

Store calls per message: 3 point reads (visit document, appointment, the changed outbox item) + 1 write,
then per day part touched (usually one; two when a text falls on another day than its visit) 1 read and at
most 1 write, and 1 read and at most 1 write of that day's totals. Placing a visit on a day the first time
reads the day's totals (which keep each part's row counts) and the part chosen.
"""

from __future__ import annotations

import copy
import logging
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lib.clock import Clock
from lib.models import Appointment, EnvironmentConfig, OutboxItem, iso
from lib.reports.inputs import ParticipantEvent, ReportUpdate, StreamQuality
from lib.reports.quality import summarize
from lib.reports.summary import totals_by_department
from lib.reports.texts import counts_for_visit, text_row
from lib.reports.visits import attendance, row_times
from lib.store.errors import AlreadyExists, ConcurrencyConflict, StoreUnavailable
from lib.store.reports import ReportSheetRepository, ReportVisitRepository, day_of, has_room, part_id, totals_id

log = logging.getLogger(__name__)

#: Roster events kept per visit (a visit has a few dozen; a runaway stream cannot grow the document forever).
MAX_EVENTS = 400
_ATTEMPTS = 8


class Appointments(Protocol):
    """:class:`lib.store.appointments.AppointmentRepository`."""

    def get(self, key: str) -> Appointment | None: ...


class Outbox(Protocol):
    """:class:`lib.store.outbox.OutboxRepository`."""

    def get(self, item_id: str) -> OutboxItem | None: ...


class Environments(Protocol):
    """:class:`lib.store.environments.EnvironmentRepository`."""

    def get(self, environment_id: str) -> EnvironmentConfig | None: ...


class ReportRecorder:
    """Applies :class:`ReportUpdate` messages to the report documents."""

    def __init__(self, *, visits: ReportVisitRepository, sheets: ReportSheetRepository, appointments: Appointments,
                 outbox: Outbox, environments: Environments, clock: Clock) -> None:
        self._visits = visits
        self._sheets = sheets
        self._appointments = appointments
        self._outbox = outbox
        self._environments = environments
        self._clock = clock

    def apply(self, update: ReportUpdate) -> str:
        """Apply one update; returns ``recorded`` or ``unchanged``.

        Raises:
            StoreUnavailable: the store is down or the document kept changing (the message comes back later).
        """
        key = update.appointment_key
        environment_id, appointment_id = key.split("|", 1)
        environment = self._environments.get(environment_id)
        for _ in range(_ATTEMPTS):
            current = self._visits.get(key)
            doc = copy.deepcopy(current) if current else {
                "id": key, "environmentId": environment_id, "appointmentId": appointment_id, "version": 0,
                "events": {}, "streams": {}, "texts": {}, "facts": {}, "placed": {}, "retired": []}
            before = copy.deepcopy(_content(doc))
            self._merge(doc, update, environment)
            doc["row"] = {**_row(doc, environment), "version": int(doc.get("version") or 0)}
            if current is not None and _content(doc) == before and not self._choose_parts(doc):
                self._place(doc)  # a redelivery after a crash between the writes: finish the sheets
                return "unchanged"
            doc["version"] = int(doc.get("version") or 0) + 1
            doc["row"]["version"] = doc["version"]
            doc["updated_utc"] = iso(self._clock.now())
            self._choose_parts(doc)
            try:
                stored = self._visits.save(doc)  # where its rows go is recorded before they are written
            except (ConcurrencyConflict, AlreadyExists):
                continue
            self._place(stored)
            return "recorded"
        raise StoreUnavailable("report document kept changing under concurrent updates")

    # ---- merging -------------------------------------------------------------------------------------------
    def _merge(self, doc: dict[str, Any], update: ReportUpdate, environment: EnvironmentConfig | None) -> None:
        appointment = self._appointments.get(update.appointment_key)  # always fresh: status, times, department
        if appointment is not None:
            doc["facts"] = _facts(appointment)
            for ref in appointment.outbox_refs:
                if ref["id"] not in doc["texts"] or update.type == "appointment":
                    self._merge_text(doc, ref["id"], ref["bucket"])
        if update.type == "text" and update.text_id and update.bucket:
            self._merge_text(doc, update.text_id, update.bucket)
        elif update.type == "presence" and update.event is not None:
            event = update.event
            keep_name = environment is not None and environment.report_clinician_names and event.role == "clinician"
            stored = event.to_doc()
            if not keep_name:
                stored.pop("display_name", None)
            doc["events"][event.id] = stored
            if len(doc["events"]) > MAX_EVENTS:
                oldest = sorted(doc["events"].values(), key=lambda e: e["at_utc"])[: len(doc["events"]) - MAX_EVENTS]
                for gone in oldest:
                    doc["events"].pop(gone["id"], None)
        elif update.type == "quality":
            for stream in update.streams:
                doc["streams"][stream.key] = stream.to_doc()

    def _merge_text(self, doc: dict[str, Any], text_id: str, bucket: str) -> None:
        item = self._outbox.get(text_id)
        if item is None or item.appointment_key != doc["id"]:
            return
        row = text_row(item)
        row["bucket"] = bucket
        doc["texts"][text_id] = row

    # ---- placing rows into day sheets ----------------------------------------------------------------------
    def _wanted(self, doc: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
        """``(section, row ID, day, row)`` of every row this visit has in the sheets."""
        version = int(doc.get("version") or 0)
        rows: list[tuple[str, str, str, dict[str, Any]]] = []
        visit_day = doc["row"].get("day")
        if visit_day:
            rows.append(("visits", doc["appointmentId"], visit_day, {**doc["row"], "version": version}))
        zone = _zone(doc["row"].get("time_zone"))
        for text_id, row in doc["texts"].items():
            day = _local_day(datetime.fromisoformat(row["bucket"] + ":00:00+00:00"), zone)
            rows.append(("texts", text_id, day, {**row, "day": day, "department": doc["row"].get("department"),
                                                 "version": version}))
        return rows

    def _choose_parts(self, doc: dict[str, Any]) -> bool:
        """Decide the part of every row not yet placed on its day (reads only); ``True`` if any moved."""
        placed: dict[str, str] = doc.setdefault("placed", {})
        moved = False
        for section, row_id, day, _row_value in self._wanted(doc):
            slot = f"{section}|{row_id}"
            where = placed.get(slot)
            if where is not None and day_of(where) == day:
                continue
            if where is not None:
                doc.setdefault("retired", []).append([where, section, row_id])
            placed[slot] = self._part_with_room(doc["environmentId"], day)
            moved = True
        return moved

    def _part_with_room(self, environment_id: str, day: str) -> str:
        """The first part of the day with room, by the row counts the totals document keeps (then checked on
        the part itself, which may have grown since)."""
        known = ((self._sheets.get(totals_id(environment_id, day)) or {}).get("parts") or {})
        numbers = sorted(int(name[1:]) for name in known)
        candidates = [n for n in numbers if has_room({"visits": range(known[f"p{n}"].get("visits", 0)),
                                                      "texts": range(known[f"p{n}"].get("texts", 0))})]
        number = candidates[0] if candidates else (numbers[-1] + 1 if numbers else 0)
        while True:
            candidate = part_id(environment_id, day, number)
            if has_room(self._sheets.get(candidate)):
                return candidate
            number += 1

    def _place(self, doc: dict[str, Any]) -> None:
        """Write the visit's rows into their parts (idempotent), retire rows left on other days, sync totals."""
        version = int(doc.get("version") or 0)
        placed = doc.get("placed") or {}
        by_part: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        for section, row_id, _day, row in self._wanted(doc):
            target = placed.get(f"{section}|{row_id}")
            if target is None:
                continue  # placed by the next write of the visit document
            by_part.setdefault(target, {"visits": {}, "texts": {}})[section][row_id] = row
        retired: dict[str, list[tuple[str, str]]] = {}
        for where, section, row_id in doc.get("retired") or []:
            if placed.get(f"{section}|{row_id}") != where:
                retired.setdefault(where, []).append((section, row_id))
        for part in sorted(set(by_part) | set(retired)):
            self._put(part, doc["environmentId"], by_part.get(part, {"visits": {}, "texts": {}}),
                      retired.get(part, []), version)

    def _put(self, part: str, environment_id: str, rows: dict[str, dict[str, dict[str, Any]]],
             retire: list[tuple[str, str]], version: int) -> None:
        for _ in range(_ATTEMPTS):
            current = self._sheets.get(part)
            doc = copy.deepcopy(current) if current else {
                "id": part, "environmentId": environment_id, "day": day_of(part), "seq": 0, "visits": {},
                "texts": {}, "totals": {}}
            changed = False
            for section in ("visits", "texts"):
                for row_id, row in rows[section].items():
                    existing = doc[section].get(row_id)
                    if existing is None or int(existing.get("version") or 0) < row["version"]:
                        doc[section][row_id] = row
                        changed = True
            for section, row_id in retire:
                existing = doc[section].get(row_id)
                if existing is not None and int(existing.get("version") or 0) < version:
                    del doc[section][row_id]
                    changed = True
            if changed:
                doc["totals"] = totals_by_department(doc["visits"].values(), doc["texts"].values())
                doc["seq"] = int(doc.get("seq") or 0) + 1
                try:
                    doc = self._sheets.save(doc)
                except (ConcurrencyConflict, AlreadyExists):
                    continue
            if current is not None or changed:
                self._sync_totals(doc)
            return
        raise StoreUnavailable("day sheet kept changing under concurrent updates")

    def _sync_totals(self, part: dict[str, Any]) -> None:
        """Copy a part's totals into its day's totals document unless it already holds them (or newer)."""
        name = part["id"].rsplit("|", 1)[1]
        target = totals_id(part["environmentId"], part["day"])
        for _ in range(_ATTEMPTS):
            current = self._sheets.get(target)
            entry = ((current or {}).get("parts") or {}).get(name)
            if entry is not None and int(entry.get("seq") or 0) >= int(part.get("seq") or 0):
                return
            doc = copy.deepcopy(current) if current else {"id": target, "environmentId": part["environmentId"],
                                                          "day": part["day"], "parts": {}}
            doc["parts"][name] = {"seq": part.get("seq") or 0, "totals": part.get("totals") or {},
                                  "visits": len(part.get("visits") or {}), "texts": len(part.get("texts") or {})}
            try:
                self._sheets.save(doc)
                return
            except (ConcurrencyConflict, AlreadyExists):
                continue
        raise StoreUnavailable("day totals kept changing under concurrent updates")


def _content(doc: dict[str, Any]) -> tuple[Any, ...]:
    return (doc.get("facts"), doc.get("events"), doc.get("streams"), doc.get("texts"), doc.get("row"))


def _facts(appointment: Appointment) -> dict[str, Any]:
    return {
        "status": appointment.status, "scheduled_start_utc": iso(appointment.start_utc),
        "scheduled_end_utc": iso(appointment.end_utc), "department": appointment.department,
        "organizer": appointment.provider_ehr_id, "conference_id": appointment.conference_id,
    }


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _local_day(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).date().isoformat()


def _row(doc: dict[str, Any], environment: EnvironmentConfig | None) -> dict[str, Any]:
    """The visit's report row from everything merged so far."""
    facts = doc.get("facts") or {}
    events = [ParticipantEvent.from_doc(e) for e in doc["events"].values()]
    att = attendance(events)
    quality = summarize(StreamQuality.from_doc(s) for s in doc["streams"].values())
    sent, delivered = counts_for_visit(list(doc["texts"].values()))
    time_zone = environment.time_zone if environment else "UTC"
    zone = _zone(time_zone)
    anchor = facts.get("scheduled_start_utc") or iso(att.start_utc) or (
        min((e.at_utc for e in events), default=None) and iso(min(e.at_utc for e in events)))
    row: dict[str, Any] = {
        "appointment_id": doc["appointmentId"], "environment_id": doc["environmentId"],
        "department": facts.get("department"), "status": facts.get("status"),
        "scheduled_start_utc": facts.get("scheduled_start_utc"), "scheduled_end_utc": facts.get("scheduled_end_utc"),
        "organizer": facts.get("organizer"), "time_zone": time_zone,
        "day": _local_day(datetime.fromisoformat(anchor), zone) if anchor else None,
        **row_times(att),
        "start_local": att.start_utc.astimezone(zone).isoformat() if att.start_utc else None,
        "texts_sent": sent, "texts_delivered": delivered,
        "quality": quality.to_doc(),
    }
    names = {e.participant_id: e.display_name for e in events if e.role == "clinician" and e.display_name}
    if names and environment is not None and environment.report_clinician_names:
        row["clinician_names"] = names
    return row

