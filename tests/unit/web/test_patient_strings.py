"""The patient pages' words: every language has every key and placeholder; the language is picked from
the page's switcher, the visit (PID-15), then the browser; times read in the patient's language."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from lib.sms.templates import TEMPLATES
from lib.web.strings import accept_language, catalog, local_datetime, pick_language, text


def test_every_language_has_every_key_and_the_same_placeholders():
    english = catalog()["en"]
    for language, words in catalog().items():
        assert set(words) == set(english), language
        for key, value in words.items():
            assert set(re.findall(r"\{(\w+)\}", value)) == set(re.findall(r"\{(\w+)\}", english[key])), key


def test_the_pages_speak_every_sms_language():
    assert set(TEMPLATES) <= set(catalog())


def test_language_choice_order_and_codes():
    assert pick_language([None, "SPA", "en"]) == "es"  # PID-15 (ISO 639-2) before the browser
    assert pick_language(["xx", None, *accept_language("fr-CA;q=0.9, es-MX;q=0.8")]) == "es"
    assert pick_language([None, *accept_language("de, *;q=0.1")]) == "en"
    assert accept_language("en;q=0.2, es-MX, fr;q=0") == ["es-MX", "en"]


def test_visit_time_reads_in_the_patients_language_and_zone():
    moment = datetime(2026, 3, 3, 19, 30, tzinfo=UTC)
    assert local_datetime(moment, "America/New_York", "en") == \
        "Tuesday, March 3, 2026, 2:30\u202fPM (Eastern Standard Time)"
    assert local_datetime(moment, "America/New_York", "es") == \
        "martes, 3 de marzo de 2026, 14:30 (hora estándar oriental)"
    assert text("es", "state.moved.text", when="X") == "La nueva hora es X."
