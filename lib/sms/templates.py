"""The wording of each text, per language, chosen by PID-15 with the environment default as fallback.

Content rules: the visit time in the patient's local zone with the zone shown, the join link, the
organization's display name; never a clinician name, a visit reason or a patient name.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "booked": "{org}: your video visit is booked for {when}. Join here: {link} Reply STOP to opt out.",
        "changed": "{org}: your video visit has moved to {when}. Join here: {link} Reply STOP to opt out.",
        "cancelled": "{org}: your video visit on {when} has been cancelled. Reply STOP to opt out.",
        "reminder": "{org}: reminder of your video visit {when}. Join here: {link} Reply STOP to opt out.",
    },
    "es": {
        "booked": "{org}: su visita por video es el {when}. Entre aquí: {link} Responda STOP para no recibir más.",
        "changed": "{org}: su visita por video cambió al {when}. Entre aquí: {link} Responda STOP para no recibir más.",
        "cancelled": "{org}: su visita por video del {when} fue cancelada. Responda STOP para no recibir más.",
        "reminder": (
            "{org}: recordatorio de su visita por video el {when}. Entre aquí: {link} "
            "Responda STOP para no recibir más."
        ),
    },
}

#: PID-15 values (ISO 639-1/-2, HL7 table 0296 style) mapped to template languages.
LANGUAGE_CODES: dict[str, str] = {"en": "en", "eng": "en", "es": "es", "spa": "es"}

_MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "es": ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"],
}
_DAYS = {
    "en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    "es": ["lun", "mar", "mié", "jue", "vie", "sáb", "dom"],
}


def template_language(pid15: str | None, default: str) -> str:
    """The template language for a PID-15 value, falling back to ``default``."""
    return LANGUAGE_CODES.get((pid15 or "").strip().lower(), default if default in TEMPLATES else "en")


def format_when(start_utc: datetime, time_zone: str, language: str) -> str:
    """The visit time as the patient reads it, e.g. ``Tue Dec 1, 10:15 AM EST`` / ``mar 1 dic, 10:15 EST``."""
    local = start_utc.astimezone(ZoneInfo(time_zone))
    zone = local.tzname() or time_zone
    day, month = _DAYS[language][local.weekday()], _MONTHS[language][local.month - 1]
    if language == "en":
        hour = local.hour % 12 or 12
        return f"{day} {month} {local.day}, {hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'} {zone}"
    return f"{day} {local.day} {month}, {local.hour:02d}:{local.minute:02d} {zone}"


def render(kind: str, *, language: str, org: str, start_utc: datetime, time_zone: str, link: str | None) -> str:
    """The text of one message.

    Args:
        kind: ``booked``, ``changed``, ``cancelled`` or ``reminder``.
        language: a key of :data:`TEMPLATES` (see :func:`template_language`).

    Raises:
        KeyError: unknown kind or language.
    """
    template = TEMPLATES[language][kind]
    return template.format(org=org, when=format_when(start_utc, time_zone, language), link=link or "")
