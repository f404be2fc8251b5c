"""Text rows (states, masked number), the range aggregates and the CSV exports, checked to the value."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

from lib.models import OutboxItem
from lib.reports.csv_export import TEXT_COLUMNS, VISIT_COLUMNS, texts_csv, visits_csv
from lib.reports.summary import pick, summarize, totals_by_department, within_allocation
from lib.reports.texts import text_row

DUE = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def item(**changes: object) -> OutboxItem:
    base = OutboxItem(id="env|A1|reminder-60|0", bucket="2026-03-02T14", appointment_key="env|A1",
                      environment_id="env", kind="reminder", revision=0, due_utc=DUE)
    return OutboxItem(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_text_states_from_the_outbox_and_delivery_reports() -> None:
    sent = {"state": "sent", "sent_utc": DUE, "segments": 2, "language": "es", "recipient_last2": "23"}
    delivered = text_row(item(**sent, delivery_status="Delivered"))
    assert (delivered["state"], delivered["recipient"], delivered["language"], delivered["segments"]) == (
        "delivered", "••23", "es", 2)
    failed = text_row(item(**sent, delivery_status="Failed", delivery_detail="Unreachable"))
    assert (failed["state"], failed["reason"]) == ("failed", "Unreachable")
    opted = text_row(item(state="blocked", reason="the recipient opted out (STOP) of texts from this number"))
    assert opted["state"] == "opted_out"
    assert text_row(item(state="blocked", reason="carrier blocked"))["state"] == "blocked"
    moved = text_row(item(**sent, reason="deferred: quiet hours"))
    assert moved["quiet_hours_moved"] is True and moved["state"] == "sent"
    assert text_row(item())["state"] == "queued"
    assert "+1" not in str(delivered) and "555" not in str(delivered)


NOW = datetime(2026, 3, 10, tzinfo=UTC)


def visit(appointment: str, day: str, start: str | None, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "appointment_id": appointment, "environment_id": "env", "day": day, "status": "booked",
        "scheduled_start_utc": f"{day}T15:00:00+00:00", "scheduled_end_utc": f"{day}T15:30:00+00:00",
        "start_utc": start, "clinician_joined": start is not None, "patient_joined": start is not None,
        "lobby_wait_seconds": None, "duration_seconds": None, "quality": {"poor": None}, "department": "CARD",
    }
    row.update(values)
    return row


ROWS = [
    visit("A1", "2026-03-02", "2026-03-02T15:05:00+00:00", lobby_wait_seconds=30, duration_seconds=1200,
          quality={"poor": False}),
    visit("A2", "2026-03-02", "2026-03-02T16:00:00+00:00", lobby_wait_seconds=300, duration_seconds=600,
          quality={"poor": True}),
    visit("A3", "2026-03-03", "2026-03-03T15:01:00+00:00", lobby_wait_seconds=2000, duration_seconds=900,
          quality={"poor": False}, department="DERM"),
    visit("A4", "2026-03-03", None, clinician_joined=True),   # patient never joined
    visit("A5", "2026-03-03", None, status="noshow"),
    visit("A6", "2026-03-03", None, status="cancelled"),
]
TEXTS = [
    {"id": "t1", "day": "2026-03-02", "state": "delivered", "sent_utc": "x", "department": "CARD"},
    {"id": "t2", "day": "2026-03-02", "state": "failed", "sent_utc": "x", "reason": "Unreachable",
     "department": "CARD"},
    {"id": "t3", "day": "2026-03-03", "state": "delivered", "sent_utc": "x", "quiet_hours_moved": True},
    {"id": "t4", "day": "2026-03-03", "state": "opted_out", "reason": "STOP"},
    {"id": "t5", "day": "2026-03-03", "state": "failed", "reason": "ACS refused: invalid number"},
]


def day_totals(department: str | None = None) -> dict[str, dict[str, object]]:
    days: dict[str, dict[str, object]] = {}
    for day in ("2026-03-02", "2026-03-03"):
        by_department = totals_by_department([r for r in ROWS if r["day"] == day],
                                             [t for t in TEXTS if t["day"] == day])
        days[day] = pick(by_department, department)
    return days


def test_aggregates_to_the_value() -> None:
    within, over = within_allocation([2, 1], 0, 2)  # allocation 2 a month: A1, A2 within, A3 over
    summary = summarize(day_totals(), date(2026, 3, 2), date(2026, 3, 3), within=within, over=over)
    v, t = summary["visits"], summary["texts"]
    assert v["by_outcome"] == {"cancelled": 1, "completed": 3, "no_show": 1, "patient_never_joined": 1}
    assert v["total"] == 6 and v["due"] == 5
    assert v["no_show_rate"] == 0.4  # A4 + A5 of 5 due (A6 cancelled)
    assert v["poor_call_share"] == round(1 / 3, 4) and (v["poor_calls"], v["classified_calls"]) == (1, 3)
    assert v["average_lobby_wait_seconds"] == round((30 + 300 + 2000) / 3)
    assert v["average_duration_seconds"] == 900
    assert {b["bucket"]: b["visits"] for b in v["lobby_wait_distribution"]} == {
        "under 1 min": 1, "1-2 min": 0, "2-5 min": 0, "5-10 min": 1, "10-15 min": 0, "15-30 min": 0,
        "30 min or more": 1}
    assert (v["within_allocation"], v["over_allocation"]) == (2, 1)
    assert (t["sent"], t["delivered"], t["failed"], t["opted_out"], t["quiet_hours_moved"]) == (3, 2, 2, 1, 1)
    assert t["delivery_rate"] == round(2 / 3, 4)
    assert t["failures_by_reason"] == {"ACS refused: invalid number": 1, "Unreachable": 1}
    day1, day2 = summary["per_day"]
    assert (day1["visits"], day1["no_show_rate"], day1["poor_call_share"], day1["delivery_rate"]) == (2, 0.0, 0.5, 0.5)
    assert (day2["visits"], day2["no_show_rate"], day2["delivery_rate"]) == (4, round(2 / 3, 4), 1.0)


def test_department_filter_and_outcomes_that_depend_on_now() -> None:
    derm = summarize(day_totals("DERM"), date(2026, 3, 2), date(2026, 3, 3))
    assert derm["visits"]["total"] == 1 and derm["visits"]["by_outcome"] == {"completed": 1}
    early = totals_by_department([ROWS[3]], [], datetime(2026, 3, 3, 15, 59, tzinfo=UTC))
    assert early["CARD"]["outcomes"] == {"scheduled": 1} and early["CARD"]["due"] == 0


def test_allocation_counts_each_month_from_its_first_day() -> None:
    assert within_allocation([3, 4], 5, 10) == (5, 2)
    assert within_allocation([3], 12, 10) == (0, 3)
    assert within_allocation([3], 0, None) == (0, 0)


def test_csv_parses_back_one_row_per_visit_with_the_header() -> None:
    rows = [{**r, "outcome": "completed" if r["start_utc"] else "nobody_joined",
             "within_allocation": True if r["start_utc"] else None} for r in ROWS]
    rows[0]["department"] = "=HYPERLINK(\"x\")"
    data = visits_csv(rows)
    assert data.startswith("\ufeff".encode())
    parsed = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert len(parsed) == 6 and tuple(parsed[0]) == VISIT_COLUMNS
    assert [p["appointment_id"] for p in parsed] == ["A1", "A2", "A3", "A4", "A5", "A6"]
    assert parsed[0]["lobby_wait_seconds"] == "30" and parsed[0]["within_allocation"] == "yes"
    assert parsed[3]["within_allocation"] == "" and parsed[3]["outcome"] == "nobody_joined"
    assert parsed[0]["department"].startswith("'=")  # never a live formula in a spreadsheet
    text_rows = [text_row(item(state="sent", sent_utc=DUE, recipient_last2="07", language="en"))]
    parsed_texts = list(csv.DictReader(io.StringIO(texts_csv(text_rows).decode("utf-8-sig"))))
    assert tuple(parsed_texts[0]) == TEXT_COLUMNS and parsed_texts[0]["recipient"] == "••07"
