"""One visit's timeline for operators: the appointment, its texts, its visit events, in time order.

Looked up by appointment ID (``--appointment``) or by a correlation ID (``--correlation``: the visit
events carrying it name their appointment). No phone number is ever read: the visit's ``phone`` document is
not touched, and outbox items carry none.
"""

from __future__ import annotations

from typing import Any

from lib.models import appointment_key

#: Appointment fields shown (no PHI is stored in appointments; this list also keeps the output short).
APPOINTMENT_FIELDS = ("id", "status", "start_utc", "end_utc", "duration_minutes", "department",
                      "provider_ehr_id", "schedule_revision", "source_time_zone", "conference_id")


def find_by_correlation(services: Any, environment_id: str, correlation_id: str) -> list[str]:
    """The appointment keys whose visit events carry ``correlation_id`` (cross-partition, operators only)."""
    from lib.store.cosmos import translated_errors

    with translated_errors():
        rows = services.store.container("visit_events").query_items(
            "SELECT c.appointmentKey FROM c WHERE c.environmentId = @env AND c.correlation_id = @cid",
            parameters=[{"name": "@env", "value": environment_id}, {"name": "@cid", "value": correlation_id}],
            enable_cross_partition_query=True,
        )
        return sorted({str(r["appointmentKey"]) for r in rows})


def timeline(services: Any, environment_id: str, appointment_id: str) -> dict[str, Any]:
    """``{"appointment": {...} | None, "entries": [{"at": iso, "what": ..., ...}, ...]}`` sorted by time.

    Entries: ``text`` (kind, revision, state, due/sent times, delivery status), ``event`` (type, role,
    write-back state and reason, correlation ID).
    """
    key = appointment_key(environment_id, appointment_id)
    appointment = services.repos.appointments.get(key)
    doc = appointment.to_doc() if appointment else None
    shown = {k: doc.get(k) for k in APPOINTMENT_FIELDS if k in doc} if doc else None
    entries: list[dict[str, Any]] = []
    for item in services.repos.outbox.for_appointment(key):
        entries.append({
            "at": (item.sent_utc or item.due_utc).isoformat(), "what": "text", "kind": item.kind,
            "revision": item.revision, "state": item.state, "dueUtc": item.due_utc.isoformat(),
            "sentUtc": item.sent_utc.isoformat() if item.sent_utc else None, "attempts": item.attempts,
            "reason": item.reason, "delivery": item.delivery_status,
        })
    for event in services.repos.visit_events.for_appointment(key):
        entries.append({
            "at": event.at_utc.isoformat(), "what": "event", "type": event.type, "role": event.role,
            "writeback": event.writeback, "writebackReason": event.writeback_reason,
            "writebackUtc": event.writeback_utc.isoformat() if event.writeback_utc else None,
            "correlationId": event.correlation_id,
        })
    entries.sort(key=lambda e: e["at"])
    return {"appointmentKey": key, "appointment": shown, "presence": presence_sources(services, key),
            "entries": entries}


def presence_sources(services: Any, key: str) -> dict[str, Any]:
    """Where the visit's presence came from (docs/presence.md): the call-events subscription (``state``:
    ``active``, ``not_allowed``, ``not_used``...; ``source`` the environment's ``presence_source``), the call
    record's and the attendance report's outcome (status and reason, e.g. ``not_allowed``, ``waiting``,
    ``not_available``). No names: these documents hold none."""
    from lib.store.call_quality import CallQualityRepository
    from lib.store.graph_subscriptions import GraphSubscriptionRepository, subscription_doc_id

    sub = GraphSubscriptionRepository(services.store).get(subscription_doc_id(key))
    quality = CallQualityRepository(services.store).get(key) or {}
    report = quality.get("attendance_report") or {}
    return {
        "subscription": {"state": sub.state, "source": sub.source, "lastError": sub.last_error} if sub else None,
        "callRecord": {"status": quality.get("status"), "reason": quality.get("reason")} if quality.get("status")
        else None,
        "attendanceReport": {"status": report.get("status"), "reason": report.get("reason"),
                             "checkedUtc": report.get("checked_utc"),
                             "eventsFromReport": report.get("report_events")}
        if report else None,
    }
