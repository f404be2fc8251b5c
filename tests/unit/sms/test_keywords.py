"""Opt-out, opt-in and HELP words as patients really send them (lib.sms.keywords): the Canadian French ARRET, a
lone STOP anywhere in a short text, the Spanish AYUDA, the providers' standard lists (REMOVE, UNSUB, TD), accents
and punctuation; and the texts that must not opt out (a negated stop, "stop by", a common word mid-sentence)."""

from __future__ import annotations

import pytest

from lib.sms.keywords import FREE_TEXT_OPT_OUT, HELP_LANGUAGES, is_opt_out, keyword


@pytest.mark.parametrize(
    ("text", "word"),
    [
        # French (Canadian carriers): every spelling, accent and case
        ("ARRET", "ARRET"), ("arret", "ARRET"), ("Arrêt", "ARRET"), ("ARRÊT!", "ARRET"), ("arrêt.", "ARRET"),
        ("Arrête", "ARRET"), ("Arrêtez", "ARRET"), ("ARRETER", "ARRET"), ("Arrêt s'il vous plaît", "ARRET"),
        ("Me désabonner", FREE_TEXT_OPT_OUT),
        # STOP as a lone word anywhere in a short text
        ("Please stop", "STOP"), ("pls stop", "STOP"), ("plz STOP!!", "STOP"), ("I want to stop", "STOP"),
        ("I want to stop.", "STOP"), ("ok STOP now", "STOP"), ("Just stop", "STOP"), ("stop", "STOP"),
        ("STOP. I said stop", "STOP"), ("No, stop", "STOP"), ("I'm not coming, stop", "STOP"),
        ("Please, STOPALL", "STOPALL"), ("please unsubscribe", FREE_TEXT_OPT_OUT), ("Unsub", "UNSUBSCRIBE"),
        ("unsub please", "UNSUBSCRIBE"), ("i revoke", "REVOKE"), ("Ｐｌｅａｓｅ ｓｔｏｐ", "STOP"),
        ("please \u0405\u0422\u041e\u0420", "STOP"), ("S.T.O.P", "STOP"), ("s t o p", "STOP"),
        # the common words: first or last word (symmetric), never mid-sentence
        ("please cancel", "CANCEL"), ("Cancel please", "CANCEL"), ("I want to quit", "QUIT"), ("Remove", "REMOVE"),
        ("please remove", "REMOVE"), ("the end", "END"), ("Can I cancel my appointment?", None),
        ("Is it the end of the hall?", None),
        # whole-text-only words of the providers' lists and of the Spanish templates
        ("TD", "TD"), ("Baja", "BAJA"), ("PARA", "PARA"), ("Para mañana a qué hora?", None), ("TD bank", None),
        # free text in Spanish
        ("No más mensajes", FREE_TEXT_OPT_OUT), ("no me envíen más", FREE_TEXT_OPT_OUT),
        ("Quiero darme de baja", FREE_TEXT_OPT_OUT), ("I don't want these reminders", FREE_TEXT_OPT_OUT),
        ("stop the reminders", "STOP"), ("No more reminders", FREE_TEXT_OPT_OUT),
        # HELP: English, Spanish, French; first or last word
        ("AYUDA", "AYUDA"), ("ayuda!", "AYUDA"), ("Ayuda por favor", "AYUDA"), ("necesito ayuda", "AYUDA"),
        ("Aide", "AIDE"), ("I need help", "HELP"), ("help?", "HELP"), ("more info", "INFO"),
        # opting in stays strict: whole text or first word
        ("START", "START"), ("Start please", "START"), ("please start", None), ("unstop", "UNSTOP"),
    ],
)
def test_spellings_patients_send(text, word):
    assert keyword(text) == word


@pytest.mark.parametrize(
    "text",
    [
        "Please don't stop my reminders", "don't stop", "Dont stop texting me", "Do not stop sending reminders",
        "please never ever stop", "I can stop by at 3", "Stop by the front desk?", "I will not stop by",
        "stopwatch", "Thanks, see you Tuesday", "Can I cancel my appointment?",
    ],
)
def test_texts_that_must_not_opt_out(text):
    assert not is_opt_out(keyword(text))


@pytest.mark.parametrize("text", ["STOP HELP", "help stop", "Ayuda. Stop", "START STOP", "pls stop, need help"])
def test_an_opt_out_wins_over_help_and_start_wherever_it_stands(text):
    assert is_opt_out(keyword(text))


def test_a_long_text_needs_the_keyword_first_or_a_clear_phrase():
    # Nine words or more: a stray "stop" inside a long sentence is not read as a revocation...
    assert keyword("I was going to ask whether the bus stop is near the clinic") is None
    # ...but the keyword first, or a plain request anywhere, is.
    assert keyword("Stop, I already told you that I do not want these") == "STOP"
    assert keyword("I already told you several times, please stop texting me") == FREE_TEXT_OPT_OUT


def test_ayuda_is_answered_in_spanish():
    assert HELP_LANGUAGES[keyword("ayuda")] == "es"
