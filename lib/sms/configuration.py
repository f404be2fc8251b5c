"""Checks of an environment's SMS settings: in full when they are saved (portal, seeding:
:func:`validate_sms_settings`), and again, cheaply, before every send (:func:`sending_problems`, plus the
segment count of the very text about to go out), so settings stored by another path never send a bad text.

A template that could take more than two segments (``lib/sms/segments.py``) is refused here, with the
worst case computed from the environment's own organization name, zone and join-link base: every day of
a year is rendered, because the weekday, month and zone abbreviation (``EST``/``EDT``) change the length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from lib.models import EnvironmentConfig, SmsSettings
from lib.sms.segments import MAX_SEGMENTS, count_segments, non_gsm7_characters
from lib.sms.templates import (
    KINDS,
    PLACEHOLDERS,
    TEMPLATES,
    format_when,
    help_contact,
    placeholders,
    render_template,
    template_for,
    texts_per_visit,
)

#: Length of a join-link token (``lib/sms/links.py``: base64url of 36 bytes).
TOKEN_LENGTH = 48
#: Path between the join-link base and the token (``functions/launch.py`` route ``join/{token}``).
JOIN_PATH = "/api/join/"
#: Public URL shorteners carriers filter (ACS ``sms-faq.md``: "do not use public URL shorteners").
PUBLIC_SHORTENERS: frozenset[str] = frozenset({
    "bit.ly", "bitly.com", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly",
    "cutt.ly", "shorturl.at", "tiny.cc", "rb.gy", "t.ly", "s.id", "lnkd.in", "v.gd", "shorte.st",
})
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
#: Longest template override (characters): a text is at most ``MAX_SEGMENTS`` segments, so a longer template
#: cannot fit whatever it renders to (the live preview takes the same limit).
MAX_TEMPLATE_CHARS = 1000
#: Longest help contact (a phone number or a web page).
MAX_HELP_CONTACT_CHARS = 200
#: Kinds whose text must carry the join link.
_NEEDS_LINK = ("booked", "changed", "reminder")


class InvalidSmsSettings(ValueError):
    """The SMS settings cannot be stored; ``problems`` lists each reason (no PHI, safe to show)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def is_e164(number: str | None) -> bool:
    """Whether ``number`` is E.164: ``+``, a country code not starting with 0, 7 to 15 digits in all (ITU-T E.164)."""
    return bool(number and _E164.match(number))


def region_of(number: str) -> str | None:
    """The ISO 3166-1 region of an E.164 number (``+44 7700 900123`` -> ``GB``), or ``None`` when unknown."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return None
    return region if region and region != "ZZ" else None


def reachable_regions(sms: SmsSettings) -> frozenset[str]:
    """The regions ``sms.sender`` can text: ``reachable_countries``, or the sender's own region."""
    if sms.reachable_countries:
        return frozenset(c.upper() for c in sms.reachable_countries)
    own = region_of(sms.sender) if sms.sender else None
    return frozenset({own}) if own else frozenset()


def unreachable_reason(sms: SmsSettings, recipient: str) -> str | None:
    """Why ``sms.sender`` cannot text ``recipient`` (no number in the reason), or ``None`` when it can."""
    region = region_of(recipient)
    allowed = reachable_regions(sms)
    if region is None or region not in allowed:
        where = region or "an unknown country"
        return f"the sender number cannot text numbers in {where} (reaches {', '.join(sorted(allowed)) or 'none'})"
    return None


def _country_problems(codes: Iterable[str]) -> list[str]:
    known = phonenumbers.SUPPORTED_REGIONS
    return [f"'{c}' is not an ISO 3166-1 country code with phone numbers" for c in codes if str(c).upper() not in known]


def sending_problems(config: EnvironmentConfig) -> list[str]:
    """The checks of :func:`validate_sms_settings` that are cheap enough to repeat before every send: the
    sender, the reachable countries and the templates' placeholders (the segment budget is checked on the
    rendered text itself)."""
    sms = config.sms
    problems: list[str] = []
    if not sms.sender or not is_e164(sms.sender):
        problems.append("the sender number must be in E.164 format, e.g. +18005550100")
    problems += _country_problems(sms.reachable_countries)
    problems += _placeholder_problems(sms)
    return problems


def worst_case_whens(time_zone: str, language: str, *, year: int = 2026) -> list[str]:
    """``{when}`` for 22:45 local on every day of ``year``: every weekday, month and zone abbreviation."""
    zone = ZoneInfo(time_zone)
    day = datetime(year, 1, 1, 22, 45, tzinfo=zone)
    seen: dict[str, None] = {}
    for offset in range(366):
        local = (day + timedelta(days=offset)).replace(hour=22, minute=45)
        seen.setdefault(format_when(local.astimezone(UTC), time_zone, language), None)
    return list(seen)


def join_link_problems(base_url: str | None) -> list[str]:
    """Problems of a join-link base URL: HTTPS (plain HTTP only on loopback), an origin and path without query
    or fragment, and not a public URL shortener."""
    if not base_url:
        return []
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    problems = []
    if parts.scheme != "https" and not (parts.scheme == "http" and host in {"127.0.0.1", "localhost"}):
        problems.append("the join-link base URL must use https")
    if not host:
        problems.append("the join-link base URL has no host name")
    if parts.query or parts.fragment:
        problems.append("the join-link base URL must not have a query or fragment")
    if host in PUBLIC_SHORTENERS or any(host.endswith("." + s) for s in PUBLIC_SHORTENERS):
        problems.append(f"{host} is a public URL shortener; carriers filter them: use the organization's own domain")
    return problems


def template_problems(
    sms: SmsSettings, *, display_name: str, time_zone: str, link_base: str
) -> list[str]:
    """Problems of the effective templates (overrides and shipped ones) of every language the environment
    can send in: placeholders, required link, and segments in the worst case."""
    problems = _placeholder_problems(sms)
    if problems:
        return problems
    link = link_base.rstrip("/") + JOIN_PATH + "x" * TOKEN_LENGTH
    contact = help_contact(sms, link_base)
    for language in sorted(set(TEMPLATES) | set(sms.templates)):
        whens = worst_case_whens(time_zone, language)
        extra = {"contact": contact, "frequency": texts_per_visit(sms, language)}
        for kind in KINDS:
            template = template_for(kind, language, sms.templates, sms.default_language)
            first = count_segments(render_template(template, org=display_name, when=whens[0], link=link, **extra))
            # One date already over the limit decides it: the year of dates is swept only for a text that might
            # still fit (this keeps a huge field at one render per template, not hundreds).
            worst = first if first.segments > MAX_SEGMENTS else max(
                (count_segments(render_template(template, org=display_name, when=w, link=link, **extra))
                 for w in whens),
                key=lambda c: (c.segments, c.units),
            )
            if worst.segments > MAX_SEGMENTS:
                sample = render_template(template, org=display_name, when=whens[0], link=link, **extra)
                hint = non_gsm7_characters(sample)
                why = f"; characters outside GSM-7 force UCS-2: {hint}" if hint else ""
                problems.append(
                    f"{language}/{kind}: can take {worst.segments} segments ({worst.units} {worst.encoding} "
                    f"units), more than {MAX_SEGMENTS}{why}"
                )
    return problems


def _placeholder_problems(sms: SmsSettings) -> list[str]:
    """Problems of the template overrides' languages, kinds and placeholders."""
    problems: list[str] = []
    for language, kinds in sms.templates.items():
        if not re.fullmatch(r"[a-z]{2}", language):
            problems.append(f"template language '{language}' must be an ISO 639-1 code such as 'en'")
        for kind, template in kinds.items():
            if kind not in KINDS:
                problems.append(f"unknown template kind '{kind}' ({language}); kinds: {', '.join(KINDS)}")
                continue
            if len(template) > MAX_TEMPLATE_CHARS:
                problems.append(f"{language}/{kind}: the text has {len(template):,} characters; at most "
                                f"{MAX_TEMPLATE_CHARS:,} (a text is at most {MAX_SEGMENTS} segments)")
                continue
            try:
                fields = placeholders(template)
            except ValueError:
                problems.append(f"{language}/{kind}: not a valid template (unbalanced braces)")
                continue
            unknown = sorted(set(fields) - PLACEHOLDERS)
            if unknown:
                problems.append(
                    f"{language}/{kind}: unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)}; "
                    "use {org}, {when}, {link}"
                )
            if kind in _NEEDS_LINK and "link" not in fields:
                problems.append(f"{language}/{kind}: the text must contain {{link}}")
            if kind != "help" and "when" not in fields:
                problems.append(f"{language}/{kind}: the text must contain {{when}}")
    return problems


def validate_sms_settings(config: EnvironmentConfig, *, public_base_url: str,
                          check_templates: bool = True) -> list[str]:
    """Every problem of ``config.sms`` (empty when it may be stored). Disabled SMS is checked too, so it
    can be switched on later without surprises.

    Args:
        config: the environment (its display name and zone are part of every text).
        public_base_url: ``Settings.public_base_url``, the join-link base when the environment has none.
        check_templates: ``False`` when a field every text contains (the display name) already failed its
            own check: the texts are then not rendered (the answer would only repeat that problem).
    """
    sms = config.sms
    problems: list[str] = []
    if sms.help_contact is not None and len(sms.help_contact) > MAX_HELP_CONTACT_CHARS:
        problems.append(f"the help contact has {len(sms.help_contact):,} characters; at most "
                        f"{MAX_HELP_CONTACT_CHARS} (a phone number or a web page)")
        check_templates = False
    if sms.enabled and not sms.sender:
        problems.append("SMS is on but no sender number is set")
    if sms.sender and not is_e164(sms.sender):
        problems.append("the sender number must be in E.164 format, e.g. +18005550100")
    offsets = sms.reminder_offsets_minutes
    if any(not isinstance(o, int) or o <= 0 for o in offsets):
        problems.append("reminder offsets must be whole minutes greater than zero")
    if len(set(offsets)) != len(offsets):
        problems.append("reminder offsets must be different from each other")
    if len(sms.quiet_hours) != 2 or not all(isinstance(t, str) and _HHMM.match(t) for t in sms.quiet_hours):
        problems.append("quiet hours must be two local times HH:MM, e.g. 21:00 and 08:00")
    if sms.rate_per_minute <= 0:
        problems.append("the sending rate must be at least 1 text a minute")
    if sms.phone_grace_minutes < 0:
        problems.append("the phone-number grace period cannot be negative")
    if sms.per_number_cap < 0 or sms.per_number_window_hours <= 0:
        problems.append("the per-number cap must be 0 (off) or more texts over a window of at least 1 hour")
    problems += _country_problems(sms.reachable_countries)
    try:
        ZoneInfo(config.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"unknown time zone '{config.time_zone}'")
        return problems
    if sms.default_language not in TEMPLATES and sms.default_language not in sms.templates:
        problems.append(f"no templates for the default language '{sms.default_language}'")
    link_problems = join_link_problems(sms.join_link_base_url)
    problems += link_problems
    if not link_problems and check_templates:
        problems += template_problems(
            sms, display_name=config.display_name, time_zone=config.time_zone,
            link_base=sms.join_link_base_url or public_base_url,
        )
    return problems


def check_sms_settings(config: EnvironmentConfig, *, public_base_url: str) -> None:
    """Raise :class:`InvalidSmsSettings` when :func:`validate_sms_settings` finds problems."""
    problems = validate_sms_settings(config, public_base_url=public_base_url)
    if problems:
        raise InvalidSmsSettings(problems)
