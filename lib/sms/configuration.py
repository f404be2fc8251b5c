"""Checks of an environment's SMS settings: in full when they are saved (portal, seeding: :func:`sms_problems`,
each problem naming its setting), and again, cheaply, before every send (:func:`sending_problems`, plus the
segment count of the very text about to go out), so settings stored by another path never send a bad text.

A template that could take more than two segments (``lib/sms/segments.py``) is refused here, with the
worst case computed from the environment's own organization name, zone and join-link base: every day of
a year is rendered, because the weekday, month and zone abbreviation (``EST``/``EDT``) change the length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from lib.field_rules import PER_NUMBER_CAP_MAX, PER_NUMBER_WINDOW_HOURS_MAX
from lib.models import EnvironmentConfig, SmsSettings
from lib.sms.keywords import names_opt_out, template_opt_out_keywords
from lib.sms.segments import MAX_SEGMENTS, count_segments, gsm7_spelling, non_gsm7_characters
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
#: A web address (``https://contoso.example/help``, ``contoso.example/help``) or an email address in a help contact.
_WEB_OR_EMAIL = re.compile(r"(https?://)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(/\S*)?|"
                           r"[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
#: Longest help contact: it goes into every HELP reply, which must stay within the segment budget.
HELP_CONTACT_MAX = 60
#: Bounds of the per-number cap: texts, and the window in hours (30 days); one place with the field's rule.
MAX_CAP_TEXTS = PER_NUMBER_CAP_MAX
MAX_CAP_WINDOW_HOURS = PER_NUMBER_WINDOW_HOURS_MAX
#: Longest template override (characters): a text is at most ``MAX_SEGMENTS`` segments, so a longer template
#: cannot fit whatever it renders to (the live preview takes the same limit).
MAX_TEMPLATE_CHARS = 1000
#: Longest help contact (a phone number or a web page).
MAX_HELP_CONTACT_CHARS = 200
#: Kinds whose text must name an opt-out keyword (the texts that start or restart a conversation).
OPT_OUT_REQUIRED_KINDS: tuple[str, ...] = ("booked", "changed")
#: Kinds whose text must carry the join link.
_NEEDS_LINK = ("booked", "changed", "reminder")


@dataclass(frozen=True)
class SmsProblem:
    """One reason SMS settings cannot be stored: the setting it concerns (a :class:`SmsSettings` field name, or
    ``sms`` for the settings as a whole) and what to do, in words a hospital admin understands (no PHI)."""

    setting: str
    message: str


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
    return [f"'{c}' is not a country code: write two-letter ISO 3166 codes such as US or CA"
            for c in codes if str(c).upper() not in known]


def help_contact_problems(contact: str | None, region: str) -> list[str]:
    """Problems of a help contact (``SmsSettings.help_contact``): patients read it in the answer to HELP
    ("Help: <contact>."), so it must give a phone number (as written in ``region``, or international), a web
    address or an email address, on one line of at most :data:`HELP_CONTACT_MAX` characters."""
    if contact is None:
        return []
    if not contact.strip() or len(contact) > HELP_CONTACT_MAX or "\n" in contact or "\r" in contact:
        return [f"the help contact is one line of 1 to {HELP_CONTACT_MAX} characters: it goes into every answer "
                "to HELP"]
    has_number = phonenumbers.PhoneNumberMatcher(contact, region if region in phonenumbers.SUPPORTED_REGIONS
                                                 else "US").has_next()
    if not has_number and not _WEB_OR_EMAIL.search(contact):
        return ["the help contact must give patients a phone number, web address or email address of your "
                "organization, e.g. 800-555-0199 or contoso.example/help"]
    return []


def cap_problems(sms: SmsSettings) -> list[SmsProblem]:
    """Problems of the per-number cap (``per_number_cap`` texts in any ``per_number_window_hours`` hours)."""
    problems = []
    if not 0 <= sms.per_number_cap <= MAX_CAP_TEXTS:
        problems.append(SmsProblem("per_number_cap", f"the per-number cap is a number of texts from 0 (no cap) to "
                                                     f"{MAX_CAP_TEXTS}, e.g. 6"))
    if not 1 <= sms.per_number_window_hours <= MAX_CAP_WINDOW_HOURS:
        problems.append(SmsProblem("per_number_window_hours", f"the cap's period is a number of hours from 1 to "
                                                              f"{MAX_CAP_WINDOW_HOURS} (30 days), e.g. 72 for 3 days"))
    return problems


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
    if parts.username is not None or parts.password is not None:
        problems.append("the join-link base URL must not contain a user name or password (it would be in every "
                        "text)")
    if parts.query or parts.fragment:
        problems.append("the join-link base URL must not have a query or fragment")
    if host in PUBLIC_SHORTENERS or any(host.endswith("." + s) for s in PUBLIC_SHORTENERS):
        problems.append(f"{host} is a public URL shortener; carriers filter them: use the organization's own domain")
    return problems


def sample_text(template: str, sms: SmsSettings, *, display_name: str, when: str, language: str,
                link_base: str) -> str:
    """``template`` filled as a patient would get it, with a join link of full length on ``link_base`` (the
    environment's join-link base, else ``PUBLIC_BASE_URL``): what the save checks and the portal's preview
    measure."""
    link = link_base.rstrip("/") + JOIN_PATH + "x" * TOKEN_LENGTH
    return render_template(template, org=display_name, when=when, link=link,
                           frequency=texts_per_visit(sms, language), contact=help_contact(sms, link_base))


def template_problems(
    sms: SmsSettings, *, display_name: str, time_zone: str, link_base: str
) -> list[str]:
    """Problems of the effective templates (overrides and shipped ones) of every language the environment
    can send in: placeholders, required link, and segments in the worst case."""
    problems = _placeholder_problems(sms)
    if problems:
        return problems
    problems = opt_out_problems(sms)
    for language in sorted(set(TEMPLATES) | set(sms.templates)):
        whens = worst_case_whens(time_zone, language)
        for kind in KINDS:
            template = template_for(kind, language, sms.templates, sms.default_language)

            def render(when: str, template: str = template, language: str = language) -> str:
                return sample_text(template, sms, display_name=display_name, when=when, language=language,
                                   link_base=link_base)

            samples = [render(whens[0])]
            first = count_segments(samples[0])
            # One date already over the limit decides it: the year of dates is swept only for a text that might
            # still fit (this keeps a huge field at one render per template, not hundreds).
            worst = first if first.segments > MAX_SEGMENTS else max(
                (count_segments(render(w)) for w in whens), key=lambda c: (c.segments, c.units))
            if worst.segments > MAX_SEGMENTS:
                sample = samples[0]
                hint = non_gsm7_characters(sample)
                why = f"; characters outside GSM-7 force UCS-2: {hint}" if hint else ""
                in_name = non_gsm7_characters(display_name)
                if in_name:
                    why = (f"; the organization name has characters outside the SMS alphabet (GSM-7): {in_name}; "
                           "spell them as plain letters and punctuation (' for ’, - for —, i for í)")
                problems.append(
                    f"{language}/{kind}: can take {worst.segments} segments ({worst.units} {worst.encoding} "
                    f"units), more than {MAX_SEGMENTS}{why}"
                )
    return problems


def opt_out_problems(sms: SmsSettings) -> list[str]:
    """Problems of booked/changed template overrides that do not tell patients how to opt out.

    The booked text is usually the first a patient gets from the sender, and a changed text may be the
    first after a long gap; US A2P and toll-free traffic is expected to carry opt-out instructions in it
    (CTIA Messaging Principles and Best Practices; toll-free verification reviews sample messages for it).
    Checked when settings are saved (not before each send: a stored template is never silently dropped).
    """
    problems = []
    for language, kinds in sorted(sms.templates.items()):
        keywords = template_opt_out_keywords(language)
        for kind in OPT_OUT_REQUIRED_KINDS:
            template = kinds.get(kind)
            if template is not None and not names_opt_out(template, language):
                shown = " or ".join(keywords)
                example = ("Responda STOP para no recibir mensajes." if language == "es"
                           else "Reply STOP to opt out.")
                problems.append(f"{language}/{kind}: the text must tell patients how to opt out: add the keyword "
                                f"{shown} in capitals, e.g. \"{example}\"")
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
                    "use " + ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
                )
            if kind in _NEEDS_LINK and "link" not in fields:
                problems.append(f"{language}/{kind}: the text must contain {{link}}")
            if kind != "help" and "when" not in fields:
                problems.append(f"{language}/{kind}: the text must contain {{when}}")
    return problems


def sms_problems(config: EnvironmentConfig, *, public_base_url: str,
                 check_templates: bool = True) -> list[SmsProblem]:
    """Every problem of ``config.sms``, each with the setting it concerns (empty when it may be stored).
    The caller decides whether the texts themselves are rendered (``check_templates``): the environment's
    rules do it when texts are on or at the SMS settings' save (``lib.config.environments.problems``).

    Args:
        config: the environment (its display name and zone are part of every text, its phone region reads a
            help contact's number).
        public_base_url: ``Settings.public_base_url``, the join-link base when the environment has none.
        check_templates: ``False`` when a field every text contains (the display name) already failed its
            own check (the answer would only repeat that problem), or when no text can be sent (SMS off,
            outside the SMS settings' own save): the texts are then not rendered.
    """
    sms = config.sms
    problems: list[SmsProblem] = []

    def add(setting: str, messages: Iterable[str]) -> None:
        problems.extend(SmsProblem(setting, message) for message in messages)

    contact_too_long = sms.help_contact is not None and len(sms.help_contact) > MAX_HELP_CONTACT_CHARS
    if contact_too_long:
        add("help_contact", [f"the help contact has {len(sms.help_contact or ''):,} characters; at most "
                             f"{MAX_HELP_CONTACT_CHARS} (a phone number or a web page)"])
        check_templates = False
    if sms.enabled and not sms.sender:
        add("sender", ["SMS is on but no sender number is set"])
    if sms.sender and not is_e164(sms.sender):
        add("sender", ["the sender number must be in E.164 format, e.g. +18005550100"])
    offsets = sms.reminder_offsets_minutes
    if any(not isinstance(o, int) or o <= 0 for o in offsets):
        add("reminder_offsets_minutes", ["reminder offsets must be whole minutes greater than zero"])
    if len(set(offsets)) != len(offsets):
        add("reminder_offsets_minutes", ["reminder offsets must be different from each other"])
    if len(sms.quiet_hours) != 2 or not all(isinstance(t, str) and _HHMM.match(t) for t in sms.quiet_hours):
        add("quiet_hours", ["quiet hours must be two local times HH:MM, e.g. 21:00 and 08:00"])
    if sms.rate_per_minute <= 0:
        add("rate_per_minute", ["the sending rate must be at least 1 text a minute"])
    if sms.phone_grace_minutes < 0:
        add("phone_grace_minutes", ["the phone-number grace period cannot be negative"])
    problems += cap_problems(sms)
    add("reachable_countries", _country_problems(sms.reachable_countries))
    if not contact_too_long:
        add("help_contact", help_contact_problems(sms.help_contact, config.default_region))
    try:
        ZoneInfo(config.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        add("sms", [f"unknown time zone '{config.time_zone}'"])
        return problems
    if sms.default_language not in TEMPLATES and sms.default_language not in sms.templates:
        add("default_language", [f"no templates for the default language '{sms.default_language}'"])
    link_problems = join_link_problems(sms.join_link_base_url)
    add("join_link_base_url", link_problems)
    if not link_problems and check_templates:
        problems += _budget_problems(config, link_base=sms.join_link_base_url or public_base_url)
    return problems


def _budget_problems(config: EnvironmentConfig, *, link_base: str) -> list[SmsProblem]:
    """The templates' problems; when only the organization name's characters outside GSM-7 push the texts
    over the budget, one problem on ``display_name`` with the spelling that fits (’ -> ', é -> e)."""
    def check(name: str) -> list[str]:
        return template_problems(config.sms, display_name=name, time_zone=config.time_zone, link_base=link_base)

    found = check(config.display_name)
    spelled, made = gsm7_spelling(config.display_name)
    if not found or not made or check(spelled):
        return [SmsProblem("templates", message) for message in found]
    pairs = ", ".join(f"{a} -> {b}" for a, b in made.items())
    return [SmsProblem("display_name", f"texts are checked with this name and it has characters outside the SMS "
                                       f"alphabet (GSM-7): {''.join(made)}; each would make a text take more "
                                       f"than {MAX_SEGMENTS} segments. Write it as \"{spelled}\" ({pairs}), "
                                       "or keep this spelling with texts switched off")]


def validate_sms_settings(config: EnvironmentConfig, *, public_base_url: str,
                          check_templates: bool = True) -> list[str]:
    """The messages of :func:`sms_problems` (empty when the settings may be stored)."""
    return [problem.message for problem in sms_problems(config, public_base_url=public_base_url,
                                                        check_templates=check_templates)]


def check_sms_settings(config: EnvironmentConfig, *, public_base_url: str) -> None:
    """Raise :class:`InvalidSmsSettings` when :func:`validate_sms_settings` finds problems."""
    problems = validate_sms_settings(config, public_base_url=public_base_url)
    if problems:
        raise InvalidSmsSettings(problems)
