"""The patient pages' words, per language (``patient.json``), and the visit's local time in that language.

The same catalog is bundled into the patient's browser client (``web/patient``), so the server-rendered
page and the messages the browser shows later read alike. Languages: at least those the SMS texts speak
(:data:`lib.sms.templates.TEMPLATES`); a visit's language comes from its PID-15 (as the texts), and the
patient may switch on the page (``?lang=``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime, format_time

from lib.sms.templates import LANGUAGE_CODES

CATALOG_PATH = Path(__file__).with_name("patient.json")
DEFAULT_LANGUAGE = "en"


@cache
def catalog() -> dict[str, dict[str, str]]:
    """``{language: {key: text}}``; every language has every key (a unit test checks it)."""
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


def languages() -> list[tuple[str, str]]:
    """``(code, name in that language)`` of every language the pages speak, in catalog order."""
    return [(code, words["language_name"]) for code, words in catalog().items()]


def pick_language(candidates: Iterable[str | None]) -> str:
    """The first candidate the pages speak (an ISO 639-1 code, a PID-15 value such as ``SPA``, or an
    ``Accept-Language`` entry such as ``es-MX``), else English."""
    known = catalog()
    for candidate in candidates:
        if not candidate:
            continue
        code = candidate.strip().lower().split("-")[0].split("_")[0]
        code = LANGUAGE_CODES.get(code, code)
        if code in known:
            return code
    return DEFAULT_LANGUAGE


def accept_language(header: str | None) -> list[str]:
    """The languages of an ``Accept-Language`` header, most wanted first (``q`` weights honoured)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if tag and tag != "*" and weight > 0:
            ranked.append((-weight, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def text(language: str, key: str, **values: str) -> str:
    """The text ``key`` in ``language`` (English when missing) with ``{name}`` placeholders filled."""
    words = catalog().get(language) or catalog()[DEFAULT_LANGUAGE]
    template = words.get(key) or catalog()[DEFAULT_LANGUAGE][key]
    return template.format(**values) if values else template


def _zone(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_datetime(moment: datetime, time_zone: str, language: str) -> str:
    """``moment`` as the patient reads it: ``Tuesday, March 3, 2026, 2:30 PM (Eastern Standard Time)``."""
    local = moment.astimezone(_zone(time_zone))
    day = format_date(local, "full", locale=language)
    clock = format_time(local, "short", locale=language)
    zone = format_datetime(local, "zzzz", locale=language)
    return f"{day}, {clock} ({zone})"


def local_time(moment: datetime, time_zone: str, language: str) -> str:
    """Only the clock time of ``moment`` with its zone: ``2:00 PM (Eastern Standard Time)``."""
    local = moment.astimezone(_zone(time_zone))
    return f"{format_time(local, 'short', locale=language)} ({format_datetime(local, 'zzzz', locale=language)})"
