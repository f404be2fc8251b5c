"""Keeps the report documents up to date from ``report-updates`` messages (queue-triggered, at least once).

For each message: read the visit's report document, merge what changed (re-reading the appointment or the
outbox item, which are the truth, or adding the roster event / media streams the message carries), derive the
row, write the document back (ETag-guarded, retried on a race), then put the visit's row and its texts' rows
into their day sheets. Every merge is a set by ID, and a sheet row is only replaced by a row of a newer
document version, so a redelivered, duplicated or out-of-order message changes nothing twice, and a process
that dies between the two writes is completed by the redelivery.

Store calls per message: 3 point reads (visit document, appointment, the changed outbox item) + 1 write,
then 1 read and at most 1 write per day sheet touched (usually one; two when a text falls on another day
than its visit).
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
from lib.reports.texts import counts_for_visit, text_row
from lib.reports.visits import attendance, row_times
from lib.store.errors import AlreadyExists, ConcurrencyConflict, StoreUnavailable
from lib.store.reports import ReportSheetRepository, ReportVisitRepository, shard_of, sheet_id

log = logging.getLogger(__name__)

#: Roster events kept per visit (a visit has a few dozen; a runaway stream cannot grow the document forever).
MAX_EVENTS = 400
_ATTEMPTS = 8


class Appointments(Protocol):
    """:class:`lib.store.appointments.AppointmentRepository`."""

    def get(self, key: str) -> Appointment | None: ...


class Outbox(Protocol):
    """:class:`lib.store.outbox.OutboxRepository`."""

    def get(self, item_id: str, bucket: str) -> OutboxItem | None: ...


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
            doc = copy.deepcopy(current) if current else {"id": key, "environmentId": environment_id,
                                                 "appointmentId": appointment_id, "version": 0, "events": {},
                                                 "streams": {}, "texts": {}, "facts": {}, "placed": []}
            before = copy.deepcopy(_content(doc))
            self._merge(doc, update, environment)
            doc["row"] = {**_row(doc, environment), "version": int(doc.get("version") or 0)}
            if current is not None and _content(doc) == before:
                self._place(doc)  # a redelivery after a crash between the two writes: finish the sheets
                return "unchanged"
            doc["version"] = int(doc.get("version") or 0) + 1
            doc["row"]["version"] = doc["version"]
            doc["updated_utc"] = iso(self._clock.now())
            try:
                stored = self._visits.save(doc)
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
        item = self._outbox.get(text_id, bucket)
        if item is None or item.appointment_key != doc["id"]:
            return
        row = text_row(item)
        row["bucket"] = bucket
        doc["texts"][text_id] = row

    # ---- placing rows into day sheets ----------------------------------------------------------------------
    def _place(self, doc: dict[str, Any]) -> None:
        environment_id, appointment_id = doc["environmentId"], doc["appointmentId"]
        shard = shard_of(appointment_id)
        zone = _zone(doc["row"].get("time_zone"))
        version = int(doc.get("version") or 0)
        wanted: dict[str, dict[str, dict[str, Any]]] = {}
        visit_day = doc["row"].get("day")
        if visit_day:
            wanted.setdefault(sheet_id(environment_id, visit_day, shard), {"visits": {}, "texts": {}})[
                "visits"][appointment_id] = {**doc["row"], "version": version}
        for text_id, row in doc["texts"].items():
            day = _local_day(datetime.fromisoformat(row["bucket"] + ":00:00+00:00"), zone)
            wanted.setdefault(sheet_id(environment_id, day, shard), {"visits": {}, "texts": {}})["texts"][text_id] = {
                **row, "day": day, "department": doc["row"].get("department"), "version": version}
        for sheet, rows in wanted.items():
            self._put(sheet, environment_id, rows, remove_visit=None)
        # The visit moved to another day (rescheduled): take its row out of the sheet it was in.
        for old in doc.get("placed") or []:
            if old not in wanted:
                self._put(old, environment_id, {"visits": {}, "texts": {}}, remove_visit=appointment_id,
                          remove_texts=set(doc["texts"]), version=version)
        if sorted(wanted) != sorted(doc.get("placed") or []):
            doc["placed"] = sorted(wanted)
            try:
                self._visits.save(doc)
            except (ConcurrencyConflict, AlreadyExists):
                pass  # a newer update re-places the rows and records where they are

    def _put(self, sheet: str, environment_id: str, rows: dict[str, dict[str, dict[str, Any]]], *,
             remove_visit: str | None, remove_texts: set[str] | frozenset[str] = frozenset(), version: int = 0) -> None:
        for _ in range(_ATTEMPTS):
            current = self._sheets.get(sheet)
            doc = copy.deepcopy(current) if current else {"id": sheet, "environmentId": environment_id,
                                                 "day": sheet.split("|")[1], "visits": {}, "texts": {}}
            changed = False
            for section in ("visits", "texts"):
                for row_id, row in rows[section].items():
                    existing = doc[section].get(row_id)
                    if existing is None or int(existing.get("version") or 0) < row["version"]:
                        doc[section][row_id] = row
                        changed = True
            if remove_visit is not None:
                existing = doc["visits"].get(remove_visit)
                if existing is not None and int(existing.get("version") or 0) < version:
                    del doc["visits"][remove_visit]
                    changed = True
                for text_id in remove_texts:
                    existing = doc["texts"].get(text_id)
                    if existing is not None and int(existing.get("version") or 0) < version:
                        del doc["texts"][text_id]
                        changed = True
            if not changed:
                return
            try:
                self._sheets.save(doc)
                return
            except (ConcurrencyConflict, AlreadyExists):
                continue
        raise StoreUnavailable("day sheet kept changing under concurrent updates")


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

