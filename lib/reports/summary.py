"""Aggregates over the rows of a range: what the report page charts and the JSON API returns.

- **visits per day**: every visit row of the day (all outcomes), and per outcome.
- **no-show rate**: visits the patient did not attend (``no_show`` from Epic, or ``patient_never_joined``)
  over the visits that were due (cancelled visits and visits not over yet are left out).
- **lobby wait distribution**: visits with a lobby wait, in the buckets of :data:`LOBBY_BUCKETS` (minutes).
- **delivery rate**: texts delivered over texts handed to ACS (``sent``, ``delivered`` or a ``failed`` delivery
  report), per day of the text.
- **poor-call share**: visits flagged poor over visits whose call quality could be classified.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lib.models import EnvironmentConfig, parse_iso
from lib.reports.visits import outcome

#: Lobby-wait buckets: (label, lower bound in minutes inclusive, upper bound exclusive).
LOBBY_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("under 1 min", 0, 1), ("1-2 min", 1, 2), ("2-5 min", 2, 5), ("5-10 min", 5, 10), ("10-15 min", 10, 15),
    ("15-30 min", 15, 30), ("30 min or more", 30, float("inf")),
)
_NOT_DUE = ("cancelled", "scheduled")
_PATIENT_ABSENT = ("no_show", "patient_never_joined")


def finish_rows(rows: list[dict[str, Any]], month_visits: dict[str, list[dict[str, Any]]],
                environments: dict[str, EnvironmentConfig], now: datetime) -> list[dict[str, Any]]:
    """Copies of ``rows`` with ``outcome`` (at ``now``) and ``within_allocation`` (``None`` when the visit did
    not take place or its environment tracks no allocation)."""
    ranks = _allocation_ranks(month_visits, environments)
    finished = []
    for row in rows:
        out = dict(row)
        out["outcome"] = outcome(row, now)
        allocation = environments[row["environment_id"]].monthly_visit_allocation \
            if row["environment_id"] in environments else None
        rank = ranks.get((row["environment_id"], row["appointment_id"]))
        out["within_allocation"] = (rank <= allocation) if (allocation is not None and rank is not None
                                                            and out["outcome"] == "completed") else None
        finished.append(out)
    return finished


def _allocation_ranks(month_visits: dict[str, list[dict[str, Any]]],
                      environments: dict[str, EnvironmentConfig]) -> dict[tuple[str, str], int]:
    """Rank of each visit that took place among its environment's visits of the same local month, by start."""
    ranks: dict[tuple[str, str], int] = {}
    for environment_id, rows in month_visits.items():
        zone = ZoneInfo(environments[environment_id].time_zone) if environment_id in environments else ZoneInfo("UTC")
        held = sorted((r for r in rows if r.get("start_utc")), key=lambda r: (r["start_utc"], r["appointment_id"]))
        per_month: Counter[str] = Counter()
        for row in held:
            month = parse_iso(row["start_utc"]).astimezone(zone).strftime("%Y-%m")  # type: ignore[union-attr]
            per_month[month] += 1
            ranks[(environment_id, row["appointment_id"])] = per_month[month]
    return ranks


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summarize(visits: list[dict[str, Any]], texts: list[dict[str, Any]], first: date, last: date) -> dict[str, Any]:
    """The aggregates of finished visit rows and text rows for local days ``first``..``last``."""
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    per_day = {d: {"visits": 0, "due": 0, "patient_absent": 0, "classified": 0, "poor": 0,
                   "texts": 0, "sent": 0, "delivered": 0, "failed": 0} for d in days}
    outcomes: Counter[str] = Counter()
    lobby = Counter()
    waits: list[int] = []
    durations: list[int] = []
    classified = poor = 0
    for row in visits:
        day = per_day.get(row.get("day") or "")
        result = row["outcome"]
        outcomes[result] += 1
        if day is not None:
            day["visits"] += 1
        if result not in _NOT_DUE and day is not None:
            day["due"] += 1
            day["patient_absent"] += result in _PATIENT_ABSENT
        wait = row.get("lobby_wait_seconds")
        if wait is not None:
            waits.append(wait)
            lobby[_bucket(wait)] += 1
        if row.get("duration_seconds") is not None:
            durations.append(row["duration_seconds"])
        flag = (row.get("quality") or {}).get("poor")
        if flag is not None:
            classified += 1
            poor += bool(flag)
            if day is not None:
                day["classified"] += 1
                day["poor"] += bool(flag)
    text_states: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    sent = delivered = failed = quiet_moved = 0
    for text in texts:
        state = text["state"]
        text_states[state] += 1
        handed = bool(text.get("sent_utc")) and state in ("sent", "delivered", "failed")
        day = per_day.get(text.get("day") or "")
        if day is not None:
            day["texts"] += 1
            day["sent"] += handed
            day["delivered"] += state == "delivered"
            day["failed"] += state == "failed"
        sent += handed
        delivered += state == "delivered"
        if state == "failed":
            failed += 1
            failures[text.get("reason") or "no reason given"] += 1
        quiet_moved += bool(text.get("quiet_hours_moved"))
    due = sum(d["due"] for d in per_day.values())
    absent = sum(d["patient_absent"] for d in per_day.values())
    return {
        "range": {"from": first.isoformat(), "to": last.isoformat()},
        "visits": {
            "total": len(visits), "by_outcome": dict(sorted(outcomes.items())),
            "no_show_rate": _rate(absent, due), "due": due,
            "average_duration_seconds": round(sum(durations) / len(durations)) if durations else None,
            "average_lobby_wait_seconds": round(sum(waits) / len(waits)) if waits else None,
            "lobby_wait_distribution": [{"bucket": label, "visits": lobby[label]} for label, _, _ in LOBBY_BUCKETS],
            "poor_call_share": _rate(poor, classified), "poor_calls": poor, "classified_calls": classified,
            "within_allocation": sum(1 for r in visits if r.get("within_allocation") is True),
            "over_allocation": sum(1 for r in visits if r.get("within_allocation") is False),
        },
        "texts": {
            "total": len(texts), "by_state": dict(sorted(text_states.items())), "sent": sent,
            "delivered": delivered, "failed": failed, "delivery_rate": _rate(delivered, sent),
            "opted_out": text_states["opted_out"], "quiet_hours_moved": quiet_moved,
            "failures_by_reason": dict(failures.most_common()),
        },
        "per_day": [
            {"day": d, "visits": v["visits"], "no_show_rate": _rate(v["patient_absent"], v["due"]),
             "poor_call_share": _rate(v["poor"], v["classified"]), "texts": v["texts"], "texts_sent": v["sent"],
             "texts_delivered": v["delivered"], "texts_failed": v["failed"],
             "delivery_rate": _rate(v["delivered"], v["sent"])}
            for d, v in per_day.items()
        ],
    }


def _bucket(seconds: int) -> str:
    minutes = seconds / 60
    for label, low, high in LOBBY_BUCKETS:
        if low <= minutes < high:
            return label
    return LOBBY_BUCKETS[-1][0]
