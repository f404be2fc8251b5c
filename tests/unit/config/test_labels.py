"""How a refused change is shown: labels as the pages show them, links to elements that exist, the spelling
suggested for an organization name outside the SMS alphabet, and pydantic's errors as plain sentences."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lib.config.environments import STORED, EnvironmentChange, Problem, pydantic_problems
from lib.config.labels import label, shown, sms_anchor
from lib.sms.segments import gsm7_spelling, is_gsm7

BASE = {"id": "e1", "kind": "test", "display_name": "Contoso", "fhir_base_urls": [], "approved": False,
        "epic_client_id": "c"}


@pytest.mark.parametrize(("field", "expected"), [
    ("display_name", "Organization name"), ("sms.per_number_cap", "Most texts to one phone number"),
    ("sms.templates", "Texts"), ("hl7_sending_facilities", "Hl7 sending facilities"), ("consents", "Consents"),
])
def test_a_field_path_is_named_by_the_pages_label(field: str, expected: str):
    assert label(field) == expected


@pytest.mark.parametrize(("field", "anchor"), [
    ("sms.per_number_cap", "per_number_cap"), ("sms.templates", "templates"), ("display_name", "templates"),
    ("sms.templates.es.help", "tpl-es-help"), ("sms.sender", "sender-heading"), ("sms.enabled", "enabled"),
    ("sms.rate_per_minute", "rate_per_minute"), ("sms.phone_grace_minutes", "phone_grace_minutes"),
    ("sms.consented_at", "sms-form"), ("time_zone", "sms-form"),
])
def test_every_sms_problem_points_at_an_element_of_the_sms_page(field: str, anchor: str):
    assert sms_anchor(field) == anchor


def test_the_environment_form_orders_its_problems_like_its_fields_and_joins_those_of_one_field():
    items, beside = shown([Problem("time_zone", "a"), Problem("id", "b"), Problem("sms.per_number_cap", "c"),
                           Problem("time_zone", "d"), Problem("approved", "e")], anchor="environment", creating=True)
    assert [i.field for i in items] == ["id", "time_zone", "time_zone", "sms", "environment-form"]
    assert items[0].message == "Environment ID: b" and beside["time_zone"] == "a · d"


@pytest.mark.parametrize(("name", "spelled"), [
    ("Ascension St. Vincent’s", "Ascension St. Vincent's"), ("Children’s — Telehealth", "Children's - Telehealth"),
    ("Clínica San José", "Clinica San José"), ("Hôpital Général", "Hopital Général"), ("Zürich-Süd", "Zürich-Süd"),
])
def test_a_name_outside_gsm7_is_spelled_with_its_plain_counterparts(name: str, spelled: str):
    assert gsm7_spelling(name)[0] == spelled and is_gsm7(spelled)


def test_a_character_without_a_plain_counterpart_is_kept():
    assert gsm7_spelling("東京 Clinic") == ("東京 Clinic", {})


def test_pydantic_errors_become_sentences_with_the_settings_path():
    with pytest.raises(ValidationError) as err:
        STORED.validate_python({**BASE, "kind": "staging", "frame_origins": "x", "provider_signin": "yes",
                                "sms": {"per_number_cap": "6", "reminder_offsets_minutes": [60, 0]}})
    found = {p.field: p.message for p in pydantic_problems(err.value)}
    assert found == {
        "kind": "must be 'test' or 'production'",
        "frame_origins": 'must be a list of text values, e.g. ["a", "b"]',
        "provider_signin": "must be true or false",
        "sms.per_number_cap": "use a whole number of texts (0: no limit) from 0 to 50",
        "sms.reminder_offsets_minutes": "entry 2: use a whole number of minutes before the visit from 1 to 43200"}
    with pytest.raises(ValidationError) as err:
        EnvironmentChange.model_validate({"surprise": 1})
    assert [(p.field, p.message) for p in pydantic_problems(err.value)] == [
        ("surprise", "unknown field: this is not a setting that can be sent here")]
