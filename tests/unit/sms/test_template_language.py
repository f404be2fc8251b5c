"""The patient's language as senders write it (lib.languages) and the template it picks (lib.sms.templates):
codes, BCP-47 tags, names in English and in the language itself, any case and accents; an unknown value falls
back to the environment's default language."""

from __future__ import annotations

import pytest

from lib.languages import cwe_language, language_code
from lib.sms.templates import template_language


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("SPA", "es"), ("spa", "es"), ("es", "es"), ("ES", "es"), ("es-US", "es"), ("ES-MX", "es"), ("es_MX", "es"),
        ("es-419", "es"), ("Spanish", "es"), ("SPANISH", "es"), (" spanish ", "es"), ("Español", "es"),
        ("espanol", "es"), ("Spanish; Castilian", "es"), ("Spanish (Mexico)", "es"), ("Spanish - Mexico", "es"),
        ("eng", "en"), ("en-GB", "en"), ("English", "en"), ("Inglés", "en"), ("fre", "fr"), ("fr-CA", "fr"),
        ("French", "fr"), ("Français", "fr"), ("zh-Hant-TW", "zh"), ("Chinese", "zh"), ("Vietnamese", "vi"),
        ("Tiếng Việt", "vi"), ("Haitian Creole", "ht"), ("Somali", "so"), ("pt-BR", "pt"), ("Portuguese", "pt"),
        ("KLI", None), ("Klingonese", None), ("und", None), ("10", None), ("", None), ("Other", None),
    ],
)
def test_language_code(value, code):
    assert language_code(value) == code


@pytest.mark.parametrize(
    ("components", "code"),
    [
        (["SPA", "Spanish", "HL70296"], "es"), (["", "Spanish"], "es"), (["", "", "", "", "Spanish"], "es"),
        (["", "", "", "spa", "Spanish"], "es"), (["10", "Spanish", "LOCAL"], "es"), (["es-US"], "es"),
        (["XX", "", "", "", "Español"], "es"),
    ],
)
def test_the_language_may_be_in_any_cwe_component(components, code):
    assert cwe_language(components) == (code, None)


@pytest.mark.parametrize(
    ("stored", "default", "language"),
    [
        ("es-US", "en", "es"), ("ES-MX", "en", "es"), ("Spanish", "en", "es"), ("spa", "en", "es"), ("es", "en", "es"),
        ("KLI", "en", "en"), ("KLI", "es", "es"), (None, "es", "es"), ("fr-CA", "en", "en"),  # no French templates
        ("en-US", "es", "en"),
    ],
)
def test_template_language(stored, default, language):
    assert template_language(stored, default) == language


def test_a_language_with_the_environments_own_templates_counts():
    assert template_language("fr-CA", "en", {"fr": {"booked": "x"}}) == "fr"
