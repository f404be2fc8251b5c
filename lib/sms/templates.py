"""The wording of each text, per language, chosen by PID-15 with the environment default as fallback.

Content rules: the visit time in the patient's local zone with the zone shown, the join link, the
organization's display name; never a clinician name, a visit reason or a patient name (HHS guidance on
appointment reminders, see ``security.md`` §3).

Shipped templates use only GSM-7 characters (``lib/sms/segments.py``): one accented letter outside the GSM
alphabet (``á í ó ú``) would switch the whole text to UCS-2 and triple its segments, so the Spanish texts
avoid them. An environment may override any template (``SmsSettings.templates``); overrides are checked by
:func:`lib.sms.configuration.validate_sms_settings` before they are stored.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from lib.languages import ISO_CODES, language_code

#: Kinds of text with a template. ``help`` answers an inbound HELP (CTIA: programme name, message frequency,
#: support contact, rates, opt-out).
KINDS: tuple[str, ...] = ("booked", "changed", "cancelled", "reminder", "help")
#: Placeholders a template may use.
PLACEHOLDERS: frozenset[str] = frozenset({"org", "when", "link", "frequency", "contact"})

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "booked": "{org}: your video visit is booked for {when}. Join here: {link} Reply STOP to opt out.",
        "changed": "{org}: your video visit has moved to {when}. Join here: {link} Reply STOP to opt out.",
        "cancelled": "{org}: your video visit on {when} has been cancelled. Reply STOP to opt out.",
        "reminder": "{org}: reminder of your video visit {when}. Join here: {link} Reply STOP to opt out.",
        "help": (
            "{org} video visit notices: {frequency}. Help: {contact}. Msg&data rates may apply. "
            "Reply STOP to opt out."
        ),
    },
    "es": {
        "booked": "{org}: su visita por video es el {when}. Enlace: {link} Responda STOP para no recibir mensajes.",
        "changed": (
            "{org}: su visita por video fue movida al {when}. Enlace: {link} Responda STOP para no recibir mensajes."
        ),
        "cancelled": "{org}: su visita por video del {when} fue cancelada. Responda STOP para no recibir mensajes.",
        "reminder": (
            "{org}: recordatorio de su visita por video el {when}. Enlace: {link} "
            "Responda STOP para no recibir mensajes."
        ),
        "help": (
            "{org} avisos de visitas por video: {frequency}. Ayuda: {contact}. Pueden aplicar tarifas de "
            "mensajes y datos. Responda STOP para no recibir mensajes."
        ),
    },
}

#: PID-15 codes (ISO 639-1 and ISO 639-2/B and /T, as in HL7 table 0296) -> ISO 639-1 (tags and names: lib.languages).
LANGUAGE_CODES: dict[str, str] = ISO_CODES

_MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "es": ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"],
}
_DAYS = {
    "en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    "es": ["lun", "mar", "mie", "jue", "vie", "sab", "dom"],  # GSM-7: no accents outside its alphabet
}


def template_language(
    pid15: str | None, default: str, overrides: Mapping[str, Mapping[str, str]] | None = None
) -> str:
    """The template language for the stored language (an ISO 639-1 code since the intake reads PID-15 with
    :mod:`lib.languages`; older visits may hold ``spa``, ``es-US``...), falling back to ``default``.

    A language counts when it is shipped or the environment has templates for it; when ``default`` has
    neither, English.
    """
    available = set(TEMPLATES) | set(overrides or {})
    language = language_code(pid15)
    if language in available:
        return language  # type: ignore[return-value]
    return default if default in available else "en"


def template_for(kind: str, language: str, overrides: Mapping[str, Mapping[str, str]] | None, default: str) -> str:
    """The template of ``kind``: the environment's for ``language``, else the shipped one, else the
    environment's default language's (override, then shipped), else English.

    Raises:
        KeyError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise KeyError(kind)
    overrides = overrides or {}
    for lang in (language, default, "en"):
        if kind in overrides.get(lang, {}):
            return overrides[lang][kind]
        if kind in TEMPLATES.get(lang, {}):
            return TEMPLATES[lang][kind]
    raise KeyError(kind)  # pragma: no cover - English has every kind


def format_when(start_utc: datetime, time_zone: str, language: str) -> str:
    """The visit time as the patient reads it, e.g. ``Tue Dec 1, 10:15 AM EST`` / ``mar 1 dic, 10:15 EST``.

    Languages without day and month names here get ``2026-12-01 10:15 EST``.
    """
    local = start_utc.astimezone(ZoneInfo(time_zone))
    zone = local.tzname() or time_zone
    if language not in _DAYS:
        return f"{local:%Y-%m-%d %H:%M} {zone}"
    day, month = _DAYS[language][local.weekday()], _MONTHS[language][local.month - 1]
    if language == "en":
        hour = local.hour % 12 or 12
        return f"{day} {month} {local.day}, {hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'} {zone}"
    return f"{day} {local.day} {month}, {local.hour:02d}:{local.minute:02d} {zone}"


def placeholders(template: str) -> list[str]:
    """The replacement fields of ``template`` as written (``org``, ``when.x``, ``0``...), in order.

    Raises:
        ValueError: the template is not a valid format string (a lone ``{`` or ``}``).
    """
    fields = []
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is not None:
            fields.append(name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else ""))
    return fields


def render_template(
    template: str, *, org: str, when: str, link: str | None, frequency: str = "", contact: str = ""
) -> str:
    """Fill ``template`` (placeholders already checked to be plain names of :data:`PLACEHOLDERS`)."""
    return template.format(org=org, when=when, link=link or "", frequency=frequency, contact=contact)


_FREQUENCY = {"en": "up to {n} msgs per visit", "es": "hasta {n} mensajes por visita"}


def texts_per_visit(sms: object, language: str = "en") -> str:
    """The HELP answer's message frequency: a booking text, each reminder and a change or cancellation."""
    n = 2 + len(getattr(sms, "reminder_offsets_minutes", ()))
    return _FREQUENCY.get(language, _FREQUENCY["en"]).format(n=n)


def help_contact(sms: object, public_base_url: str) -> str:
    """Where a patient gets help: ``SmsSettings.help_contact``, else the site of the join links."""
    return getattr(sms, "help_contact", None) or (getattr(sms, "join_link_base_url", None) or public_base_url)


def render(
    kind: str,
    *,
    language: str,
    org: str,
    start_utc: datetime | None,
    time_zone: str,
    link: str | None,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    default_language: str = "en",
    frequency: str = "",
    contact: str = "",
) -> str:
    """The text of one message.

    Args:
        kind: one of :data:`KINDS`.
        language: see :func:`template_language`.
        start_utc: the visit's start (``None`` only for ``help``).
        overrides: the environment's ``SmsSettings.templates``.

    Raises:
        KeyError: unknown kind.
    """
    template = template_for(kind, language, overrides, default_language)
    when = format_when(start_utc, time_zone, language) if start_utc is not None else ""
    return render_template(template, org=org, when=when, link=link, frequency=frequency, contact=contact)
