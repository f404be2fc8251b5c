"""Stored environment settings checked again before use (lib.stored_settings): every setting the portal now
refuses is found and named, each reader leaves aside only what it never reads, and the answer is remembered
per configuration object."""

from __future__ import annotations

import dataclasses

import pytest

from lib.models import EnvironmentConfig, SmsSettings
from lib.store.environments import _parsed
from lib.stored_settings import (
    NOT_FOR_INTAKE,
    NOT_FOR_TEXTS,
    NOT_FOR_VISITS,
    NOT_FOR_WRITEBACK,
    UnusableSetting,
    check_usable,
    unusable_settings,
)

GOOD = EnvironmentConfig(id="t-good", kind="test", display_name="Contoso Health",
                         fhir_base_urls=("https://fhir.contoso.example/api/FHIR/R4",), approved=True,
                         epic_client_id="test-client", sms=SmsSettings(enabled=True, sender="+18005550100"))

#: One value per rule the portal enforces on a field, as an older version or a direct store write could leave it.
BROKEN = [
    ("client_assertion_alg", "HS256"),
    ("launch_mode", "magic"),
    ("kind", "staging"),
    ("hl7_auth", "basic"),
    ("lobby_bypass_scope", "everyone"),
    ("presence_source", "psychic"),
    ("time_zone", "Mars/Base"),
    ("display_name", "Line one\nline two"),
    ("writeback_vendor_name", ""),
    ("frame_origins", ("*",)),
    ("appointment_id_order", ("SCH2",)),
    ("appointment_id_order", ()),
    ("encrypted_max_age_seconds", 0),
    ("monthly_visit_allocation", -1),
    ("writeback_retry_horizon_minutes", 1e23),
    ("provider_signin", "sometimes"),
]
SMS_BROKEN = [
    ("reminder_offsets_minutes", (0,)),
    ("reminder_offsets_minutes", (60 * 24 * 31,)),
    ("rate_per_minute", 0),
    ("phone_grace_minutes", -5),
    ("per_number_window_hours", 0),
]


def broken(setting: str, value: object) -> EnvironmentConfig:
    if setting.startswith("sms."):
        return dataclasses.replace(GOOD, sms=dataclasses.replace(GOOD.sms, **{setting[4:]: value}))
    return dataclasses.replace(GOOD, **{setting: value})


def test_an_environment_the_portal_would_accept_is_usable_by_every_reader():
    assert unusable_settings(GOOD) == ()
    for ignore in ((), NOT_FOR_VISITS, NOT_FOR_INTAKE, NOT_FOR_TEXTS, NOT_FOR_WRITEBACK):
        check_usable(GOOD, ignore=ignore)


@pytest.mark.parametrize(("setting", "value"), BROKEN + [(f"sms.{name}", value) for name, value in SMS_BROKEN])
def test_every_setting_the_portal_refuses_is_named_with_the_portals_words(setting, value):
    config = broken(setting, value)
    with pytest.raises(UnusableSetting) as refused:
        check_usable(config)
    assert refused.value.setting == setting
    assert refused.value.environment_id == "t-good"
    assert refused.value.reason.startswith(f"portal setting wrong: {setting}: ")
    assert refused.value.message and "Value error" not in refused.value.message
    assert "/api/portal/environments/t-good/edit" in refused.value.admin_hint()


def test_the_client_assertion_algorithm_is_named_not_left_to_fail_as_missing_keys():
    with pytest.raises(UnusableSetting) as refused:
        check_usable(broken("client_assertion_alg", "HS256"))
    assert refused.value.reason == "portal setting wrong: client_assertion_alg: Input should be 'RS384' or 'ES384'"
    assert len(refused.value.reason) <= 80  # fits MSA-3 whole


@pytest.mark.parametrize(("setting", "value", "stops"), [
    ("sms.reminder_offsets_minutes", (0,), {"intake", "texts"}),
    ("writeback_retry_horizon_minutes", 1, {"writeback"}),
    ("writeback_vendor_name", "", {"writeback"}),
    ("client_assertion_alg", "HS256", {"visits", "intake", "texts", "writeback"}),
    ("time_zone", "Nowhere/Else", {"visits", "intake", "texts", "writeback"}),
])
def test_each_reader_is_stopped_only_by_the_settings_it_reads(setting, value, stops):
    config = broken(setting, value)
    readers = {"visits": NOT_FOR_VISITS, "intake": NOT_FOR_INTAKE, "texts": NOT_FOR_TEXTS,
               "writeback": NOT_FOR_WRITEBACK}
    stopped = set()
    for reader, ignore in readers.items():
        try:
            check_usable(config, ignore=ignore)
        except UnusableSetting as exc:
            assert exc.setting == setting
            stopped.add(reader)
    assert stopped == stops


def test_several_broken_settings_are_all_carried_and_counted_in_the_reason():
    config = dataclasses.replace(GOOD, client_assertion_alg="HS256", launch_mode="magic", time_zone="Mars/Base")
    with pytest.raises(UnusableSetting) as refused:
        check_usable(config)
    assert {p.setting for p in refused.value.problems} == {"client_assertion_alg", "launch_mode", "time_zone"}
    assert refused.value.reason.endswith("(and 2 more)")
    hint = refused.value.admin_hint()
    assert all(name in hint for name in ("client_assertion_alg", "launch_mode", "time_zone"))


def test_the_answer_is_remembered_per_configuration_object_and_a_changed_one_is_checked_again():
    config = broken("launch_mode", "magic")
    first = unusable_settings(config)
    assert unusable_settings(config) is first
    repaired = dataclasses.replace(config, launch_mode="smart")
    assert unusable_settings(repaired) == ()


@pytest.mark.parametrize(("field", "value", "setting"), [
    ("hl7_sending_facilities", ["EPIC|ADT"], "hl7_sending_facilities"),
    ("approvals", {"https://x/api/FHIR/R4": "yes"}, "settings"),
    ("fhir_base_urls", 7, "settings"),
])
def test_a_stored_document_that_is_not_a_configuration_is_refused_by_name_not_with_a_crash(field, value, setting):
    doc = {**GOOD.to_doc(), field: value}
    with pytest.raises(UnusableSetting) as refused:
        _parsed(doc)
    assert refused.value.setting == setting and refused.value.environment_id == "t-good"


def _portal_page(template: str, **context: object) -> str:
    from functions.portal import STATUSES
    from lib.web import render

    base = {"user": None, "csrf_token": "", "problems": [], "notice": None, "statuses": STATUSES, "section": "",
            "title": "Environments", "can_edit": True}
    return render(template, {**base, **context}).html


def test_the_portal_lists_each_environment_with_unusable_settings_and_each_unreadable_one():
    from lib.config.views import environment_view

    bad = dataclasses.replace(GOOD, id="t-bad", client_assertion_alg="HS256", time_zone="Mars/Base")
    views = [environment_view(GOOD), environment_view(bad)]
    assert views[0]["unusableSettings"] == []
    assert [p["setting"] for p in views[1]["unusableSettings"]] == ["time_zone", "client_assertion_alg"]
    unreadable = [UnusableSetting("hl7_sending_facilities", "entry 1: printable characters", environment_id="t-gone")]
    html = _portal_page("portal/environments.html", environments=views,
                        unusable=[v for v in views if v["unusableSettings"]], unreadable=unreadable)
    warning = html[html.index('id="unusable-settings"'):html.index("</div>", html.index('id="unusable-settings"'))]
    assert 'href="/api/portal/environments/t-bad/edit"' in warning
    assert "<code>client_assertion_alg</code> (Input should be &#39;RS384&#39; or &#39;ES384&#39;)" in warning
    assert "<code>time_zone</code>" in warning
    assert "<code>t-gone</code>: its stored document cannot be read (<code>hl7_sending_facilities</code>" in warning
    assert "t-good" not in warning
    clean = _portal_page("portal/environments.html", environments=views[:1], unusable=[], unreadable=[])
    assert 'id="unusable-settings"' not in clean


def test_the_environment_page_names_its_unusable_settings_and_links_to_the_form():
    from lib.config.views import environment_view

    view = environment_view(dataclasses.replace(GOOD, client_assertion_alg="HS256"))
    html = _portal_page("portal/environment.html", env=view, audit=[], certificate_error=None)
    warning = html[html.index('id="unusable-settings"'):]
    assert "<li><code>client_assertion_alg</code>: Input should be" in warning
    assert 'href="/api/portal/environments/t-good/edit">Correct them</a>' in warning
    assert 'id="unusable-settings"' not in _portal_page("portal/environment.html", env=environment_view(GOOD),
                                                          audit=[], certificate_error=None)
