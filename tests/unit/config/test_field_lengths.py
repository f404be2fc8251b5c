"""A huge form field is refused by its length, cheaply: the SMS template check (which renders every text for a
year of dates) is skipped once a field it depends on already failed, and stops at one date when that one is
already over the limit. The work is asserted by counting renders, never by timing."""

from __future__ import annotations

import dataclasses

import pytest

from lib.config.environments import problems
from lib.models import EnvironmentConfig, SmsSettings
from lib.sms import configuration
from lib.sms.configuration import validate_sms_settings, worst_case_whens

BASE = "https://visits.contoso-health.example.org"
URL = "https://fhir.contoso.example/interconnect-fhir-oauth/api/FHIR/R4"


def env(display_name: str = "Contoso Health", **sms_changes: object) -> EnvironmentConfig:
    return EnvironmentConfig(
        id="e1", kind="test", display_name=display_name, fhir_base_urls=(URL,), approved=True,
        epic_client_id="vv-test-client", time_zone="America/Chicago",
        sms=dataclasses.replace(SmsSettings(enabled=False), **sms_changes),  # type: ignore[arg-type]
    )


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the SMS check's template renders (one list entry per render)."""
    calls: list[int] = []
    real = configuration.render_template

    def counted(*args: object, **kwargs: object) -> str:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(configuration, "render_template", counted)
    return calls


def _check(config: EnvironmentConfig, *, sms_save: bool = False) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for p in problems(config, others=[], public_base_url=BASE, discover=None, new_urls=set(), sms_save=sms_save):
        found.setdefault(p.field, []).append(p.message)
    return found


def test_a_70000_character_name_is_refused_by_its_length_without_rendering_a_text(renders: list[int]) -> None:
    found = _check(env("N" * 70_000))
    assert found == {"display_name": ["enter the organization's name as patients know it (1 to 80 characters; "
                                      "this one has 70,000)"]}
    assert renders == []


def test_a_valid_name_still_has_its_texts_checked_at_the_sms_save_or_with_texts_on(renders: list[int]) -> None:
    assert _check(env(), sms_save=True) == {}
    assert len(renders) > 100  # every kind and language, for a year of dates
    renders.clear()
    assert _check(dataclasses.replace(env(), sms=SmsSettings(enabled=True, sender="+18005550100",
                                                             consented_at="2026-01-01T00:00:00+00:00"))) == {}
    assert len(renders) > 100


def test_with_texts_off_the_environment_save_renders_no_text(renders: list[int]) -> None:
    assert _check(env("Clínica San José — Telehealth")) == {}
    assert renders == []


def test_a_50000_character_help_answer_is_refused_by_its_length_without_rendering(renders: list[int]) -> None:
    found = validate_sms_settings(env(templates={"en": {"help": "H" * 50_000}}), public_base_url=BASE)
    assert found == ["en/help: the text has 50,000 characters; at most 1,000 (a text is at most 2 segments)"]
    assert renders == []


def test_a_50000_character_help_contact_is_refused_by_its_length_without_rendering(renders: list[int]) -> None:
    found = validate_sms_settings(env(help_contact="5" * 50_000), public_base_url=BASE)
    assert found == ["the help contact has 50,000 characters; at most 200 (a phone number or a web page)"]
    assert renders == []


def test_a_template_over_the_limit_on_its_first_date_is_rendered_once_not_for_a_year(renders: list[int]) -> None:
    validate_sms_settings(env(), public_base_url=BASE)
    every_date = len(renders)
    renders.clear()
    long = "{org}: " + "please remember your video visit " * 20 + "{when}. {link}"
    found = validate_sms_settings(env(templates={"en": {"reminder": long}}), public_base_url=BASE)
    assert len(found) == 1 and found[0].startswith("en/reminder: can take 6 segments (")
    # the refused reminder: its first date only (that render also gives the message's sample), not the year
    assert every_date - len(renders) == len(worst_case_whens("America/Chicago", "en"))
