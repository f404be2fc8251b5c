"""Frame origins and the refused-frame decision; the per-process rate limits and the client address."""

from __future__ import annotations

import pytest

from lib.smart.errors import LaunchError
from lib.visits.framing import FrameContext, KnownFrameOrigins, check_frame, frame_origin_problem, origin_of
from lib.visits.throttle import AnonymousThrottle, client_address

OURS = "https://app.example.org"
EPIC = "https://epic.contoso.org"


@pytest.mark.parametrize("value", [EPIC, "https://epic.contoso.org:8443", "http://localhost:9401"])
def test_frame_origins_accepted(value):
    assert frame_origin_problem(value) is None


@pytest.mark.parametrize("value", ["https://epic.contoso.org/", "https://*.contoso.org", "http://epic.contoso.org",
                                   "https://Epic.Contoso.org", "epic.contoso.org", "https://epic.contoso.org/x", ""])
def test_frame_origins_refused(value):
    assert frame_origin_problem(value)


def test_origin_of_drops_path_and_default_port():
    assert origin_of("https://Epic.Contoso.org:443/Hyperspace/x?y") == EPIC
    assert origin_of("https://epic.contoso.org:8443/") == "https://epic.contoso.org:8443"
    assert origin_of("javascript:alert(1)") is None and origin_of(None) is None


@pytest.mark.parametrize(("frame", "refused"), [
    (FrameContext("iframe", "https://evil.example.net/page"), True),
    (FrameContext("iframe", f"{EPIC}/hyperspace"), False),
    (FrameContext("iframe", f"{OURS}/api/launch/x"), False),
    (FrameContext("iframe", None), False),  # no Referer: the browser's frame-ancestors decides alone
    (FrameContext("document", "https://evil.example.net/page"), False),  # a link, not a frame
    (None, False),
])
def test_a_frame_of_a_known_foreign_origin_is_refused(frame, refused):
    if refused:
        with pytest.raises(LaunchError) as err:
            check_frame(frame, (EPIC,), OURS)
        assert err.value.code == "FRAME_NOT_ALLOWED" and "evil.example.net" in err.value.admin_hint
    else:
        check_frame(frame, (EPIC,), OURS)


def test_known_frame_origins_are_the_union_cached_and_empty_when_the_store_fails():
    class Env:
        def __init__(self, *origins):
            self.frame_origins = origins

    calls = []
    now = [0.0]

    def all_environments():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("store down")
        return [Env(EPIC), Env(EPIC, "https://mychart.contoso.org")]

    known = KnownFrameOrigins(all_environments, ttl_seconds=60, monotonic=lambda: now[0])
    assert known.origins() == (EPIC, "https://mychart.contoso.org")
    assert known.origins() == (EPIC, "https://mychart.contoso.org") and len(calls) == 1
    now[0] = 61
    assert known.origins() == ()
    assert known.origins() == () and len(calls) == 2  # a failed read is not retried on every page
    now[0] = 72
    known.origins()
    assert len(calls) == 3


def test_launch_attempts_are_limited_per_address_with_retry_after():
    throttle = AnonymousThrottle(launch_limit="3/minute", guess_limit="2/minute")
    assert [throttle.launch_attempt("198.51.100.7") for _ in range(3)] == [None, None, None]
    refusal = throttle.launch_attempt("198.51.100.7")
    assert refusal is not None and refusal.kind == "launch" and 1 <= refusal.retry_after <= 60
    assert throttle.launch_attempt("198.51.100.8") is None  # another address has its own window


def test_only_failed_guesses_count():
    throttle = AnonymousThrottle(guess_limit="2/minute")
    for _ in range(10):
        assert throttle.guesses_exhausted("a") is None  # looking costs nothing
    throttle.failed_guess("a")
    throttle.failed_guess("a")
    refusal = throttle.guesses_exhausted("a")
    assert refusal is not None and refusal.kind == "guess"
    assert throttle.guesses_exhausted("b") is None


def test_a_secret_we_issued_is_never_counted_nor_refused_and_any_other_is_a_guess():
    throttle = AnonymousThrottle(guess_limit="2/minute")
    assert [throttle.presented("a", issued=False) for _ in range(2)] == [None, None]  # counted, answered
    refusal = throttle.presented("a", issued=False)
    assert refusal is not None and refusal.kind == "guess" and 1 <= refusal.retry_after <= 60
    assert throttle.presented("a", issued=True) is None  # the address is over the limit; the real link is not
    assert throttle.guesses_exhausted("a") is not None
    assert [throttle.presented("b", issued=True) for _ in range(10)] == [None] * 10
    assert throttle.guesses_exhausted("b") is None  # issued secrets were never counted


@pytest.mark.parametrize(("header", "client"), [
    ("203.0.113.9", "203.0.113.9"), ("203.0.113.9:51234", "203.0.113.9"),
    ("6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the client's own entry first, the front end's last
    ("[2001:db8::1]:443", "2001:db8::1"), ("2001:db8::1", "2001:db8::1"), ("", "unknown"),
])
def test_client_address_trusts_only_the_last_forwarded_entry(header, client):
    assert client_address({"x-forwarded-for": header} if header else {}) == client
