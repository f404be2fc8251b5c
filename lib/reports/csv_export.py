"""CSV exports: UTF-8 (with a byte order mark so spreadsheet programs read it as UTF-8), a header row, one row
per visit or per text. No phone number (texts show the last two digits only), no patient name, no token.
Cells that a spreadsheet would run as a formula are prefixed with ``'`` (OWASP "CSV injection")."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from lib.reports.quality import METRICS

_QUALITY_GROUPS = tuple(f"{role}/{media}" for role in ("clinician", "patient") for media in ("audio", "video"))

VISIT_COLUMNS: tuple[str, ...] = (
    "environment_id", "appointment_id", "department", "day", "scheduled_start_utc", "start_utc", "start_local",
    "end_utc", "duration_seconds", "organizer", "clinicians", "clinician_names", "peak_participants",
    "lobby_wait_seconds", "outcome", "status", "within_allocation", "texts_sent", "texts_delivered", "poor_call",
    *(f"{group.replace('/', '_')}_{metric}" for group in _QUALITY_GROUPS for metric in METRICS),
)

TEXT_COLUMNS: tuple[str, ...] = (
    "environment_id", "appointment_id", "department", "day", "id", "kind", "language", "segments", "state", "reason",
    "quiet_hours_moved", "due_utc", "sent_utc", "delivery_utc", "recipient",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = "; ".join(f"{k}: {v}" for k, v in value.items())
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def visit_cells(row: dict[str, Any]) -> dict[str, Any]:
    """A finished visit row flattened to :data:`VISIT_COLUMNS`."""
    quality = row.get("quality") or {}
    flat = {name: row.get(name) for name in VISIT_COLUMNS}
    flat["poor_call"] = quality.get("poor")
    by = quality.get("by") or {}
    for group in _QUALITY_GROUPS:
        for metric in METRICS:
            flat[f"{group.replace('/', '_')}_{metric}"] = (by.get(group) or {}).get(metric)
    return flat


def to_csv(rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> bytes:
    """UTF-8 CSV (BOM, CRLF line ends per RFC 4180) of ``rows`` in ``columns``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def visits_csv(rows: Iterable[dict[str, Any]]) -> bytes:
    """The visits export."""
    return to_csv((visit_cells(r) for r in rows), VISIT_COLUMNS)


def texts_csv(rows: Iterable[dict[str, Any]]) -> bytes:
    """The texts export."""
    return to_csv(rows, TEXT_COLUMNS)
