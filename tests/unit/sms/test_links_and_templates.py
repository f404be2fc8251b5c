"""Join-link tokens (lib.sms.links) and text wording (lib.sms.templates)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from lib.sms.links import InvalidLink, JoinLinks
from lib.sms.templates import format_when, render, template_language

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
KEY = bytes(range(32))


def test_token_round_trips_to_the_link_id_and_hides_it():
    link_id = secrets.token_urlsafe(16)
    token = JoinLinks(KEY).token(link_id, NOW + timedelta(days=1))
    assert link_id not in token
    assert len(token) == 48
    assert JoinLinks(KEY).verify(token, now=NOW) == link_id


def test_tampered_token_is_refused():
    token = JoinLinks(KEY).token(secrets.token_urlsafe(16), NOW + timedelta(days=1))
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    with pytest.raises(InvalidLink, match="not valid"):
        JoinLinks(KEY).verify(flipped, now=NOW)


def test_token_signed_with_another_key_is_refused():
    token = JoinLinks(bytes(32)).token(secrets.token_urlsafe(16), NOW + timedelta(days=1))
    with pytest.raises(InvalidLink):
        JoinLinks(KEY).verify(token, now=NOW)


def test_issued_checks_only_the_signature_so_an_expired_link_is_ours_and_a_tampered_one_is_not():
    links = JoinLinks(secrets.token_bytes(32))
    expired = links.token(secrets.token_urlsafe(16), datetime.now(UTC) - timedelta(days=3))
    assert links.issued(expired)
    with pytest.raises(InvalidLink):
        links.verify(expired, now=datetime.now(UTC))
    tampered = expired[:-2] + ("AA" if not expired.endswith("AA") else "BB")
    assert not links.issued(tampered)
    assert not links.issued("") and not links.issued("<script>") and not links.issued("A" * 5000)
    assert not JoinLinks(secrets.token_bytes(32)).issued(expired)


def test_expiry_past_2106_is_clamped_not_a_crash():
    link_id = secrets.token_urlsafe(16)
    token = JoinLinks(KEY).token(link_id, datetime(2200, 1, 6, tzinfo=UTC))
    assert JoinLinks(KEY).verify(token, now=datetime(2106, 2, 7, tzinfo=UTC)) == link_id
    with pytest.raises(InvalidLink, match="expired"):
        JoinLinks(KEY).verify(token, now=datetime(2106, 2, 8, tzinfo=UTC))


def test_expiry_before_1970_is_an_expired_token_not_a_crash():
    token = JoinLinks(KEY).token(secrets.token_urlsafe(16), datetime(1900, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidLink, match="expired"):
        JoinLinks(KEY).verify(token, now=NOW)


def test_expired_token_is_refused():
    token = JoinLinks(KEY).token(secrets.token_urlsafe(16), NOW)
    with pytest.raises(InvalidLink, match="expired"):
        JoinLinks(KEY).verify(token, now=NOW)


@pytest.mark.parametrize("garbage", ["", "abc", "!!!!", "A" * 200])
def test_garbage_token_is_refused(garbage):
    with pytest.raises(InvalidLink):
        JoinLinks(KEY).verify(garbage, now=NOW)


def test_time_is_shown_in_the_patients_zone_with_the_zone():
    start = datetime(2026, 12, 1, 15, 15, tzinfo=UTC)
    assert format_when(start, "America/New_York", "en") == "Tue Dec 1, 10:15 AM EST"
    assert format_when(start, "America/Chicago", "es") == "mar 1 dic, 09:15 CST"


def test_booked_text_has_time_link_and_organization_only():
    text = render(
        "booked", language="en", org="Contoso Health", start_utc=datetime(2026, 7, 1, 16, 0, tzinfo=UTC),
        time_zone="America/New_York", link="https://visits.example.org/api/join/TOKEN",
    )
    assert text == (
        "Contoso Health: your video visit is booked for Wed Jul 1, 12:00 PM EDT. "
        "Join here: https://visits.example.org/api/join/TOKEN Reply STOP to opt out."
    )


@pytest.mark.parametrize(
    ("pid15", "expected"), [("SPA", "es"), ("es", "es"), ("eng", "en"), (None, "en"), ("ara", "en")]
)
def test_template_language_follows_pid15_then_the_default(pid15, expected):
    assert template_language(pid15, "en") == expected
