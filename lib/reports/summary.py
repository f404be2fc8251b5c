"""Aggregates: mergeable per-day totals, and the summary of a range built from them.

Each day sheet part keeps the totals of its own rows (computed when it is written, so they always match the
rows), per department; a small per-day totals document mirrors them, so a range summary reads one small document
per day instead of every row. Only days that may still hold a visit that is not over (the last two local days)
are summed from their rows at read time, because a visit's outcome is ``scheduled`` until an hour after its end.

- **visits per day**: every visit row of the day (all outcomes), and per outcome.
- **no-show rate**: visits the patient did not attend (``no_show`` from Epic, or ``patient_never_joined``)
  over the visits that were due (cancelled visits and visits not over yet are left out).
- **lobby wait distribution**: visits with a lobby wait, in the buckets of :data:`LOBBY_BUCKETS` (minutes).
- **delivery rate**: texts delivered over texts handed to ACS (``sent``, ``delivered`` or a ``failed`` delivery
  report), per day of the text.
- **poor-call share**: visits flagged poor over visits whose call quality could be classified.
- **within / over the monthly allocation**: completed visits ranked by start within their local month.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lib.reports.visits import outcome

#: Lobby-wait buckets: (label, lower bound in minutes inclusive, upper bound exclusive).
LOBBY_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("under 1 min", 0, 1), ("1-2 min", 1, 2), ("2-5 min", 2, 5), ("5-10 min", 5, 10), ("10-15 min", 10, 15),
    ("15-30 min", 15, 30), ("30 min or more", 30, float("inf")),
)
_NOT_DUE = ("cancelled", "scheduled")
_PATIENT_ABSENT = ("no_show", "patient_never_joined")
#: Failure reasons kept per totals entry (the rest count as "other reasons").
MAX_REASONS = 40
#: "Now" far enough ahead that every visit is over: the outcome a visit will keep.
_EVENTUALLY = datetime(9999, 1, 1, tzinfo=UTC)

Totals = dict[str, Any]


def empty() -> Totals:
    """Totals of nothing."""
    return {"visits": 0, "outcomes": {}, "due": 0, "absent": 0, "completed": 0, "lobby": {}, "wait_sum": 0,
            "wait_n": 0, "dur_sum": 0, "dur_n": 0, "classified": 0, "poor": 0, "texts": 0, "states": {},
            "sent": 0, "delivered": 0, "failed": 0, "opted_out": 0, "quiet": 0, "reasons": {}}


def add(total: Totals, other: Mapping[str, Any]) -> Totals:
    """Add ``other`` into ``total`` (numbers add, nested counters add per key); returns ``total``."""
    for key, value in other.items():
        if isinstance(value, Mapping):
            inner = total.setdefault(key, {})
            for name, count in value.items():
                inner[name] = inner.get(name, 0) + count
        else:
            total[key] = total.get(key, 0) + value
    return total


def _bucket(seconds: int) -> str:
    minutes = seconds / 60
    for label, low, high in LOBBY_BUCKETS:
        if low <= minutes < high:
            return label
    return LOBBY_BUCKETS[-1][0]


def _one(total: Totals, key: str, name: str) -> None:
    total[key][name] = total[key].get(name, 0) + 1


def totals_by_department(visits: Iterable[dict[str, Any]], texts: Iterable[dict[str, Any]],
                         now: datetime = _EVENTUALLY) -> dict[str, Totals]:
    """Totals of stored rows per department (``""`` = none), outcomes as of ``now`` (by default: the outcome
    each visit will keep)."""
    result: dict[str, Totals] = {}
    for row in visits:
        total = result.setdefault(row.get("department") or "", empty())
        result_outcome = row.get("outcome") or outcome(row, now)
        total["visits"] += 1
        _one(total, "outcomes", result_outcome)
        if result_outcome not in _NOT_DUE:
            total["due"] += 1
            total["absent"] += result_outcome in _PATIENT_ABSENT
        total["completed"] += result_outcome == "completed"
        wait = row.get("lobby_wait_seconds")
        if wait is not None:
            _one(total, "lobby", _bucket(wait))
            total["wait_sum"] += wait
            total["wait_n"] += 1
        if row.get("duration_seconds") is not None:
            total["dur_sum"] += row["duration_seconds"]
            total["dur_n"] += 1
        flag = (row.get("quality") or {}).get("poor")
        if flag is not None:
            total["classified"] += 1
            total["poor"] += bool(flag)
    for text in texts:
        total = result.setdefault(text.get("department") or "", empty())
        state = text["state"]
        total["texts"] += 1
        _one(total, "states", state)
        total["sent"] += bool(text.get("sent_utc")) and state in ("sent", "delivered", "failed")
        total["delivered"] += state == "delivered"
        total["opted_out"] += state == "opted_out"
        total["quiet"] += bool(text.get("quiet_hours_moved"))
        if state == "failed":
            total["failed"] += 1
            reason = text.get("reason") or "no reason given"
            if reason not in total["reasons"] and len(total["reasons"]) >= MAX_REASONS:
                reason = "other reasons"
            _one(total, "reasons", reason)
    return result


def pick(by_department: Mapping[str, Mapping[str, Any]], department: str | None) -> Totals:
    """One department's totals, or all departments summed (``department`` ``None``)."""
    total = empty()
    for name, values in by_department.items():
        if department is None or name == department:
            add(total, values)
    return total


def within_allocation(completed_by_day: list[int], before: int, allocation: int | None) -> tuple[int, int]:
    """``(within, over)`` for days with ``completed_by_day`` completed visits, ``before`` completed earlier in
    the same month."""
    if allocation is None:
        return 0, 0
    within = over = 0
    for count in completed_by_day:
        room = max(0, allocation - before)
        within += min(room, count)
        over += max(0, count - room)
        before += count
    return within, over


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summarize(days: Mapping[str, Totals], first: date, last: date, *, within: int = 0, over: int = 0) -> dict[str, Any]:
    """The summary of local days ``first``..``last`` from their (filtered) totals."""
    names = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    total = empty()
    for name in names:
        add(total, days.get(name, empty()))
    return {
        "range": {"from": first.isoformat(), "to": last.isoformat()},
        "visits": {
            "total": total["visits"], "by_outcome": dict(sorted(total["outcomes"].items())),
            "no_show_rate": _rate(total["absent"], total["due"]), "due": total["due"],
            "average_duration_seconds": round(total["dur_sum"] / total["dur_n"]) if total["dur_n"] else None,
            "average_lobby_wait_seconds": round(total["wait_sum"] / total["wait_n"]) if total["wait_n"] else None,
            "lobby_wait_distribution": [{"bucket": label, "visits": total["lobby"].get(label, 0)}
                                        for label, _, _ in LOBBY_BUCKETS],
            "poor_call_share": _rate(total["poor"], total["classified"]), "poor_calls": total["poor"],
            "classified_calls": total["classified"], "within_allocation": within, "over_allocation": over,
        },
        "texts": {
            "total": total["texts"], "by_state": dict(sorted(total["states"].items())), "sent": total["sent"],
            "delivered": total["delivered"], "failed": total["failed"],
            "delivery_rate": _rate(total["delivered"], total["sent"]), "opted_out": total["opted_out"],
            "quiet_hours_moved": total["quiet"],
            "failures_by_reason": dict(sorted(total["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))),
        },
        "per_day": [
            {"day": name, "visits": d["visits"], "no_show_rate": _rate(d["absent"], d["due"]),
             "poor_call_share": _rate(d["poor"], d["classified"]), "texts": d["texts"], "texts_sent": d["sent"],
             "texts_delivered": d["delivered"], "texts_failed": d["failed"],
             "delivery_rate": _rate(d["delivered"], d["sent"])}
            for name in names for d in [days.get(name) or empty()]
        ],
    }
