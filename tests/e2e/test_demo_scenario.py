"""The main job end to end, through the dev runner's HTTP server and every stand-in: the same run as
``./dev demo``, asserted on what a user would check (issue: foundation, steps 1-7)."""

from __future__ import annotations

import re

import pytest

from local.demo import PATIENT_E164

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(service_settings):
    from local.demo import run_demo

    lines: list[str] = []
    result = run_demo("test", out=lines.append)
    return result, "\n".join(lines)


def test_s12_is_acknowledged_and_stored_without_phi(demo):
    result, _ = demo
    assert result.ack_codes[0] == "AA"
    stored = result.stored_appointment
    assert stored["status"] == "booked"
    assert stored["duration_minutes"] == 30
    assert stored["provider_ehr_id"] == "E1001"
    assert stored["department"] == "IM"
    assert PATIENT_E164[-7:] not in str(stored)  # the number lives only in contacts
    assert "PATIENT" not in str(stored)
    assert result.contact_ttl and result.contact_ttl > 0


def test_confirmation_then_exactly_one_reminder_then_one_cancellation(demo):
    result, _ = demo
    kinds = [
        "booked" if "is booked for" in t["message"] else
        "reminder" if "reminder of your video visit" in t["message"] else
        "cancelled" if "has been cancelled" in t["message"] else "other"
        for t in result.texts
    ]
    assert kinds == ["booked", "reminder", "cancelled"]
    assert all(t["to"] == PATIENT_E164 for t in result.texts)
    assert result.texts_after_cancel_timer == 0


def test_texts_show_local_time_with_zone_and_an_opaque_link(demo):
    result, _ = demo
    booked = result.texts[0]["message"]
    assert re.search(r"for \w{3} \w{3} \d{1,2}, 3:00 PM E[SD]T\.", booked)
    link = re.search(r"/api/join/([A-Za-z0-9_-]+)", booked).group(1)
    assert result.csn not in link


def test_provider_launches_land_in_one_meeting(demo):
    result, _ = demo
    first, second = result.provider_redirects
    assert first[-1] == second[-1] == result.join_url
    assert "/l/meetup-join/" in result.join_url
    assert any("/oauth2/authorize" in hop for hop in first)
    assert any("/api/launch/callback" in hop for hop in first)


def test_patient_link_opens_the_join_page_of_the_same_meeting(demo):
    result, _ = demo
    assert result.patient_page_status == 200
    assert result.patient_page_has_meeting


def test_each_participant_event_is_written_back_once(demo):
    result, _ = demo
    # The patient's device test, then from the meeting's roster (not the launch clicks or the page): each
    # connected once and disconnected once, in order.
    by_participant: dict[str, list[str]] = {}
    for call in result.writebacks:
        by_participant.setdefault(call["ExternalID"], []).append(call["ConnectionStatus"])
    assert by_participant["E1001"] == ["1", "2"]
    assert sorted(by_participant["patient"]) == ["1", "2", "3"]
    assert [s for s in by_participant["patient"] if s != "3"] == ["1", "2"]
    assert all(c["ConferenceID"] == result.csn and c["auth"] == "bearer" for c in result.writebacks)


def test_trace_is_readable(demo):
    _, trace = demo
    for step in range(1, 8):
        assert f"== {step}. " in trace
    assert PATIENT_E164 not in trace  # numbers are masked in the trace
