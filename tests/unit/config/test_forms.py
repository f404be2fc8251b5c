"""The environment form is rendered from the model's field types and read back into the API's typed body."""

from __future__ import annotations

import dataclasses

import pytest

from lib.config.environments import EnvironmentChange
from lib.config.forms import defaults, editable_names, form_fields, parse_form
from lib.models import EnvironmentConfig


def test_every_editable_setting_of_the_model_is_on_the_form_and_nothing_the_portal_sets_itself():
    names = set(editable_names(creating=False))
    own = {"approvals", "approved", "hl7_certificates", "sms", "disabled", "id"}
    assert names == {f.name for f in dataclasses.fields(EnvironmentConfig)} - own
    assert "id" in editable_names(creating=True)


def test_widgets_follow_the_types():
    widgets = {f.name: f.widget for f in form_fields(defaults(), creating=True)}
    assert widgets["provider_signin"] == "checkbox" and widgets["kind"] == "radios"
    assert widgets["fhir_base_urls"] == "lines" and widgets["department_organizers"] == "pairs"
    assert widgets["encrypted_max_age_seconds"] == "number" and widgets["display_name"] == "text"


def test_the_form_text_becomes_the_typed_body_the_api_validates():
    form = {"fhir_base_urls": ["https://a/api/FHIR/R4\r\n\r\nhttps://b/api/FHIR/R4 "],
            "approvers": ["https://a/api/FHIR/R4 = analyst@contoso.example"],
            "department_organizers": ["10501 = 5b4e6f0a-0c1d-4e2f-9a3b-0d1e2f3a4b5c"],
            "provider_signin": [""], "fallback_organizer_id": [""], "encrypted_max_age_seconds": ["120"],
            "kind": ["production"]}
    body, raw, problems = parse_form(form, creating=False)
    assert problems == []
    typed = EnvironmentChange.model_validate(body).model_dump(exclude_unset=True)
    assert typed["fhir_base_urls"] == ("https://a/api/FHIR/R4", "https://b/api/FHIR/R4")
    assert typed["approvers"] == {"https://a/api/FHIR/R4": "analyst@contoso.example"}
    assert typed["department_organizers"] == {"10501": "5b4e6f0a-0c1d-4e2f-9a3b-0d1e2f3a4b5c"}
    assert typed["provider_signin"] is False and typed["fallback_organizer_id"] is None
    assert typed["encrypted_max_age_seconds"] == 120 and typed["kind"] == "production"
    assert raw["encrypted_max_age_seconds"] == "120"


def test_pairs_without_equals_are_named_and_the_other_fields_still_read():
    body, _, problems = parse_form({"department_organizers": ["10501 5b4e\n10502 = x\ngarbage"],
                                    "encrypted_fields": ["garbage line"], "encrypted_max_age_seconds": ["120"]},
                                   creating=False)
    assert [(p.field, p.message) for p in problems] == [
        ("department_organizers", "'10501 5b4e', 'garbage': write each line as key = value"),
        ("encrypted_fields", "'garbage line': write each line as key = value")]
    assert "department_organizers" not in body and body["encrypted_max_age_seconds"] == 120


def test_a_number_field_turns_only_its_digits_into_a_json_integer():
    body, _, _ = parse_form({"encrypted_max_age_seconds": [" 300 "], "writeback_retry_horizon_minutes": ["1e3"],
                             "monthly_visit_allocation": [""]}, creating=False)
    assert body["encrypted_max_age_seconds"] == 300 and body["writeback_retry_horizon_minutes"] == "1e3"
    assert body["monthly_visit_allocation"] is None


def test_the_presence_source_is_a_choice_of_three_defaulting_to_auto():
    (field,) = [f for f in form_fields(defaults(), creating=True) if f.name == "presence_source"]
    assert (field.widget, field.options, field.value) == ("radios", ("auto", "notifications", "attendance_report"),
                                                          "auto")
    body, _, _ = parse_form({"presence_source": ["attendance_report"]}, creating=False)
    assert EnvironmentChange.model_validate(body).model_dump(exclude_unset=True)["presence_source"] == (
        "attendance_report")
    with pytest.raises(ValueError):
        EnvironmentChange.model_validate({"presence_source": "polling"})


def test_the_lobby_scope_is_a_choice_without_everyone_defaulting_to_organization():
    (field,) = [f for f in form_fields(defaults(), creating=True) if f.name == "lobby_bypass_scope"]
    assert (field.widget, field.value) == ("radios", "organization")
    assert set(field.options) == {"organization", "organizer", "organizationExcludingGuests",
                                  "organizationAndFederated"}  # never "everyone": the patient waits
    body, _, _ = parse_form({"lobby_bypass_scope": ["organizer"]}, creating=False)
    assert EnvironmentChange.model_validate(body).model_dump(exclude_unset=True)["lobby_bypass_scope"] == "organizer"
    with pytest.raises(ValueError):
        EnvironmentChange.model_validate({"lobby_bypass_scope": "everyone"})
