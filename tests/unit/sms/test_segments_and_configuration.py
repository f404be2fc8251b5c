"""Segment counting (lib.sms.segments) and the configuration-time checks (lib.sms.configuration)."""

from __future__ import annotations

import dataclasses

import pytest

from lib.models import EnvironmentConfig, SmsSettings
from lib.sms.configuration import InvalidSmsSettings, check_sms_settings, is_e164, validate_sms_settings
from lib.sms.segments import GSM7_BASIC, GSM7_EXTENSION, count_segments, is_gsm7

BASE = "https://visits.contoso-health.example.org"


def env(**sms_changes) -> EnvironmentConfig:
    return EnvironmentConfig(
        id="e1", kind="test", display_name="Contoso Health", fhir_base_urls=(), approved=True,
        epic_client_id="c", sms=dataclasses.replace(SmsSettings(enabled=True, sender="+18005550100"), **sms_changes),
    )


def test_gsm7_tables_have_127_basic_and_10_extension_characters():
    assert len(GSM7_BASIC) == 127  # 128 codes minus the escape
    assert len(GSM7_EXTENSION) == 10
    assert GSM7_BASIC.isdisjoint(GSM7_EXTENSION)


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters cost two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 164, 2),  # the escape pair moves whole to segment 2
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # ...so 306 septets need 3 segments here
        ("ñéüà¿¡" * 10, "GSM-7", 60, 1),  # accented letters that GSM-7 has
        ("í" * 70, "UCS-2", 70, 1),  # one letter GSM-7 lacks makes UCS-2
        ("í" * 71, "UCS-2", 71, 2),
        ("í" * 134, "UCS-2", 134, 2),
        ("í" * 135, "UCS-2", 135, 3),
        ("a" * 66 + "😀" + "a" * 5, "UCS-2", 73, 2),
        ("a" * 66 + "😀" + "a" * 66, "UCS-2", 134, 3),  # the surrogate pair is not split
    ],
)
def test_segments_follow_gsm7_and_ucs2_limits(text, encoding, units, segments):
    count = count_segments(text)
    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)


def test_spanish_accents_outside_gsm7_are_detected():
    assert is_gsm7("recordatorio de su visita el mie 2 dic")
    assert not is_gsm7("Entre aquí")


def test_shipped_templates_fit_two_segments_for_a_typical_environment():
    assert validate_sms_settings(env(), public_base_url=BASE) == []


def test_a_template_that_can_exceed_two_segments_is_refused_with_the_count():
    long = "{org}: " + "please remember your video visit " * 6 + "{when}. {link}"
    problems = validate_sms_settings(env(templates={"en": {"reminder": long}}), public_base_url=BASE)
    assert len(problems) == 1
    assert problems[0].startswith("en/reminder: can take 3 segments (")
    assert problems[0].endswith("GSM-7 units), more than 2")


def test_an_accent_outside_gsm7_is_named_when_it_breaks_the_limit():
    text = "{org}: recordatorio de su visita por video el {when}. Entre aquí: {link} Responda STOP."
    problems = validate_sms_settings(env(templates={"es": {"reminder": text}}), public_base_url=BASE)
    assert len(problems) == 1
    assert "UCS-2" in problems[0] and problems[0].endswith("characters outside GSM-7 force UCS-2: í")


def test_a_long_organization_name_can_push_the_shipped_templates_over():
    config = dataclasses.replace(env(), display_name="Contoso Regional Health System " * 4)
    problems = validate_sms_settings(config, public_base_url=BASE)
    assert problems and all("segments" in p for p in problems)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{org} {when} {link} {patient}",
         "en/booked: unknown placeholder(s) {patient}; use {contact}, {frequency}, {link}, {org}, {when}"),
        (
            "{org.__class__} {when} {link}",
            "en/booked: unknown placeholder(s) {org.__class__}; use {contact}, {frequency}, {link}, {org}, {when}",
        ),
        ("{org} {when}", "en/booked: the text must contain {link}"),
        ("{org} {link}", "en/booked: the text must contain {when}"),
        ("{org {when} {link}", "en/booked: not a valid template (unbalanced braces)"),
    ],
)
def test_template_placeholders_are_checked(template, problem):
    assert validate_sms_settings(env(templates={"en": {"booked": template}}), public_base_url=BASE) == [problem]


def test_unknown_kind_and_language_code_are_refused():
    problems = validate_sms_settings(env(templates={"english": {"promo": "x"}}), public_base_url=BASE)
    assert problems == [
        "template language 'english' must be an ISO 639-1 code such as 'en'",
        "unknown template kind 'promo' (english); kinds: booked, changed, cancelled, reminder, help",
    ]


@pytest.mark.parametrize(
    ("base", "problem"),
    [
        ("https://bit.ly", "bit.ly is a public URL shortener; carriers filter them: use the organization's own domain"),
        ("http://visits.example.org", "the join-link base URL must use https"),
        ("https://visits.example.org/?a=1", "the join-link base URL must not have a query or fragment"),
    ],
)
def test_join_link_base_must_be_a_branded_https_origin(base, problem):
    assert validate_sms_settings(env(join_link_base_url=base), public_base_url=BASE) == [problem]


def test_other_settings_are_checked():
    problems = validate_sms_settings(
        env(sender="8005550100", reminder_offsets_minutes=(60, 60, -5), quiet_hours=("9pm", "08:00"),
            rate_per_minute=0, phone_grace_minutes=-1),
        public_base_url=BASE,
    )
    assert problems == [
        "the sender number must be in E.164 format, e.g. +18005550100",
        "reminder offsets must be whole minutes greater than zero",
        "reminder offsets must be different from each other",
        "quiet hours must be two local times HH:MM, e.g. 21:00 and 08:00",
        "the sending rate must be at least 1 text a minute",
        "the phone-number grace period cannot be negative",
    ]


def test_check_raises_with_every_problem():
    with pytest.raises(InvalidSmsSettings) as info:
        check_sms_settings(env(sender=None), public_base_url=BASE)
    assert info.value.problems == ["SMS is on but no sender number is set"]


@pytest.mark.parametrize(
    ("number", "ok"),
    [("+12015550123", True), ("+390612345678", True), ("12015550123", False), ("+0123456789", False),
     ("+1201555012345678", False), ("+1 201 555 0123", False), (None, False)],
)
def test_e164(number, ok):
    assert is_e164(number) is ok


def test_reachable_countries_must_be_iso_regions_with_phone_numbers():
    problems = validate_sms_settings(env(reachable_countries=("US", "XX")), public_base_url=BASE)
    assert problems == ["'XX' is not a country code: write two-letter ISO 3166 codes such as US or CA"]


@pytest.mark.parametrize(
    ("countries", "recipient", "reason"),
    [((), "+12015550123", None),
     ((), "+447400123456", "the sender number cannot text numbers in GB (reaches US)"),
     (("us", "gb"), "+447400123456", None),
     (("US",), "+15", "the sender number cannot text numbers in an unknown country (reaches US)")],
)
def test_a_sender_texts_only_the_countries_it_reaches(countries, recipient, reason):
    from lib.sms.configuration import unreachable_reason

    assert unreachable_reason(env(reachable_countries=countries).sms, recipient) == reason


def test_the_checks_repeated_before_sending_are_the_cheap_ones():
    from lib.sms.configuration import sending_problems

    assert sending_problems(env()) == []
    assert sending_problems(env(sender="555", templates={"en": {"booked": "{when} {link} {name}"}})) == [
        "the sender number must be in E.164 format, e.g. +18005550100",
        "en/booked: unknown placeholder(s) {name}; use {contact}, {frequency}, {link}, {org}, {when}",
    ]


@pytest.mark.parametrize(
    ("contact", "problem"),
    [("800-555-0199", None), ("call (201) 555-0123", None), ("+44 20 7946 0018", None),
     ("contoso.example/help", None), ("https://contoso.example/help", None), ("help@contoso.example", None),
     ("ask at the front desk", "the help contact must give patients a phone number, web address or email address "
                               "of your organization, e.g. 800-555-0199 or contoso.example/help"),
     ("", "the help contact is one line of 1 to 60 characters: it goes into every answer to HELP"),
     ("x" * 61 + ".example", "the help contact is one line of 1 to 60 characters: it goes into every answer to HELP")],
)
def test_the_help_contact_must_give_a_number_web_or_email_address(contact, problem):
    from lib.sms.configuration import sms_problems

    found = [(p.setting, p.message) for p in sms_problems(env(help_contact=contact), public_base_url=BASE)]
    assert found == ([("help_contact", problem)] if problem else [])


@pytest.mark.parametrize(
    ("cap", "hours", "expected"),
    [(0, 72, []), (50, 720, []),
     (-1, 72, [("per_number_cap", "the per-number cap is a number of texts from 0 (no cap) to 50, e.g. 6")]),
     (6, 0, [("per_number_window_hours",
              "the cap's period is a number of hours from 1 to 720 (30 days), e.g. 72 for 3 days")])],
)
def test_the_per_number_cap_counts_texts_over_hours(cap, hours, expected):
    from lib.sms.configuration import sms_problems

    found = sms_problems(env(per_number_cap=cap, per_number_window_hours=hours), public_base_url=BASE)
    assert [(p.setting, p.message) for p in found] == expected


def test_a_long_help_contact_that_pushes_help_over_two_segments_is_refused_on_the_help_text():
    from lib.sms.configuration import sms_problems
    from lib.sms.templates import TEMPLATES

    help_text = TEMPLATES["en"]["help"] + (" Our clinics answer texts on weekdays from 8 AM to 6 PM; for anything "
                                           "urgent please call 911 or go to your nearest emergency room today.")
    short = env(templates={"en": {"help": help_text}}, help_contact="contoso.example/help")
    assert sms_problems(short, public_base_url=BASE) == []
    long = dataclasses.replace(short.sms, help_contact="https://contoso-regional-health.example/patients/help-desk")
    found = sms_problems(dataclasses.replace(short, sms=long), public_base_url=BASE)
    assert [(p.setting, p.message[:28]) for p in found] == [("templates", "en/help: can take 3 segments")]


@pytest.mark.parametrize(
    ("language", "kind", "template", "problem"),
    [
        ("en", "booked", "{org}: visit {when}. {link}",
         'en/booked: the text must tell patients how to opt out: add the keyword STOP in capitals, e.g. "Reply STOP '
         'to opt out."'),
        ("en", "changed", "{org}: moved to {when}. {link} Reply stop to opt out.",
         'en/changed: the text must tell patients how to opt out: add the keyword STOP in capitals, e.g. "Reply '
         'STOP to opt out."'),
        ("es", "booked", "{org}: su visita es el {when}. {link} Gracias.",
         'es/booked: the text must tell patients how to opt out: add the keyword STOP or PARA in capitals, e.g. '
         '"Responda STOP para no recibir mensajes."'),
        ("fr", "booked", "{org}: visite le {when}. {link} Repondez ARRET.",
         'fr/booked: the text must tell patients how to opt out: add the keyword STOP in capitals, e.g. "Reply STOP '
         'to opt out."'),
        ("en", "booked", "{org}: visit {when}. {link} Reply STOP to opt out.", None),
        ("en", "changed", "{org}: moved to {when}. {link} Text STOP to end texts.", None),
        ("es", "changed", "{org}: su visita se movio al {when}. {link} Responda PARA para no recibir mensajes.", None),
        # reminders and cancellations are not the first text of a conversation: no keyword required
        ("en", "reminder", "{org}: visit {when}. {link}", None),
        ("en", "cancelled", "{org}: your visit on {when} is cancelled.", None),
    ],
)
def test_a_booked_or_changed_template_must_name_the_opt_out_keyword(language, kind, template, problem):
    problems = validate_sms_settings(env(templates={language: {kind: template}}), public_base_url=BASE)
    assert problems == ([problem] if problem else [])


def test_a_stored_template_without_opt_out_wording_is_still_sent():
    """The check is made when settings are saved; a template stored before it existed keeps sending."""
    from lib.sms.configuration import sending_problems

    assert sending_problems(env(templates={"en": {"booked": "{org}: visit {when}. {link}"}})) == []
