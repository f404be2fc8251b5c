"""The reports page in a real browser (Debian chromium): signed in as a ReportsReader, the figures, charts and
tables are drawn from the JSON API under the strict CSP, pass axe, and are saved as screenshots; the CSV export
parses back; every other caller is refused."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from lib.models import Appointment, OutboxItem, hour_bucket
from lib.reports.inputs import ParticipantEvent, ReportUpdate, StreamQuality
from tests.e2e.browser import axe_violations, save_screenshot, sign_in
from tests.e2e.layout import broken_words, card_labels, horizontal_overflow
from tests.support.environments import make_environment

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York
QUERY = "from=2026-03-01&to=2026-03-03&environment={env}"
READER = "reader@contoso.example"


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def reported(app: Any, environment_id: str, clock: Any) -> str:
    """Three visits and two texts of one environment, recorded as the queue trigger records them."""
    env = environment_id
    make_environment(app, env, monthly_visit_allocation=10)
    record = app.report_recorder.apply
    texts = [
        OutboxItem(id=f"{env}|V1|reminder-60|0", bucket=hour_bucket(m(-60)), appointment_key=f"{env}|V1",
                   environment_id=env, kind="reminder", revision=0, due_utc=m(-60), state="sent", sent_utc=m(-60),
                   segments=1, language="es", recipient_last2="23", delivery_status="Delivered",
                   delivery_event_utc=m(-59)),
        OutboxItem(id=f"{env}|V2|reminder-60|0", bucket=hour_bucket(m(0)), appointment_key=f"{env}|V2",
                   environment_id=env, kind="reminder", revision=0, due_utc=m(0), state="sent", sent_utc=m(0),
                   segments=2, language="en", recipient_last2="07", delivery_status="Failed",
                   delivery_detail="Unreachable destination", delivery_event_utc=m(1)),
    ]
    for text in texts:
        app.repos.outbox.create_once(text)
    for appointment_id, start, dept in (("V1", T0, "CARDIOLOGY"), ("V2", m(60), "CARDIOLOGY"),
                                        ("V3", T0 + timedelta(days=1), "DERM")):
        refs = [{"id": t.id, "bucket": t.bucket} for t in texts if t.appointment_key.endswith(f"|{appointment_id}")]
        app.repos.appointments.create(Appointment(
            environment_id=env, appointment_id=appointment_id, status="booked", start_utc=start,
            end_utc=start + timedelta(minutes=30), duration_minutes=30, source_time_zone="America/New_York",
            department=dept, provider_ehr_id="E1001", outbox_refs=refs))
        record(ReportUpdate("appointment", f"{env}|{appointment_id}"))
    for n, (kind, role, who, at) in enumerate([("lobby", "patient", "patient", 1), ("joined", "clinician", "E1001", 3),
                                               ("joined", "patient", "patient", 5), ("left", "patient", "patient", 25),
                                               ("left", "clinician", "E1001", 26)]):
        record(ReportUpdate("presence", f"{env}|V1", event=ParticipantEvent(f"v1-{n}", kind, role, who, m(at))))
    record(ReportUpdate("quality", f"{env}|V1", streams=(StreamQuality(
        "patient", "patient", "audio", "received", avg_jitter_ms=45.0, max_jitter_ms=90.0, avg_loss=0.01,
        avg_rtt_ms=80.0, packets=9000),)))
    record(ReportUpdate("presence", f"{env}|V2", event=ParticipantEvent("v2-0", "joined", "clinician", "E1001", m(61))))
    record(ReportUpdate("presence", f"{env}|V2", event=ParticipantEvent("v2-1", "left", "clinician", "E1001", m(75))))
    clock.set(T0 + timedelta(days=4))
    return env


def cookie_for(app: Any, roles: list[str]) -> dict[str, str]:
    from lib.config.access import DEV_COOKIE

    return {"Cookie": f"{DEV_COOKIE}={app.portal.access.dev_cookie(READER, roles)}"}


def test_reports_reader_sees_figures_charts_and_tables_without_csp_or_axe_violations(
        live_app: str, page: Any, console_messages: list[str], reported: str) -> None:
    sign_in(page, live_app, READER, ("ReportsReader",))
    page.goto(f"{live_app}/api/portal/reports?{QUERY.format(env=reported)}")
    page.wait_for_selector("#report[data-loaded=true]")
    figure = lambda name: page.locator(f"[data-figure={name}] dd").inner_text()  # noqa: E731
    assert (figure("visits"), figure("completed"), figure("no-show-rate")) == ("3", "1", "33.3 %")
    assert (figure("average-lobby-wait"), figure("poor-call-share")) == ("4 min 00 s", "100 %")
    assert (figure("sent"), figure("delivered"), figure("delivery-rate"), figure("failed")) == ("2", "1", "50 %", "1")
    assert page.locator("#chart-visits rect").count() == 3  # one bar per day
    assert [page.locator("#chart-visits rect").nth(n).get_attribute("data-value") for n in range(3)] == ["0", "2", "1"]
    assert page.locator("#chart-lobby rect").count() == 7
    rows = page.locator("#visits-table tbody tr")
    assert rows.count() == 3
    first = rows.nth(0).locator("td").all_inner_texts()
    assert first[1:8] == ["V1", "CARDIOLOGY", "2026-03-02 10:05", "21 min 00 s", "4 min 00 s", "Completed", "E1001"]
    assert rows.nth(1).locator("td").nth(6).inner_text() == "Patient never joined"
    texts = page.locator("#texts-table tbody tr")
    assert texts.count() == 2
    assert texts.nth(1).locator("td").nth(7).inner_text() == "••07"
    assert page.locator("#failures-table tbody tr td").first.inner_text() == "Unreachable destination"
    assert axe_violations(page) == []
    save_screenshot(page, "reports-page")
    page.set_viewport_size({"width": 390, "height": 844})
    save_screenshot(page, "reports-page-phone")
    assert not [msg for msg in console_messages if "Content Security Policy" in msg], console_messages
    assert not re.search(r"\+1\d{10}|555-?01", page.content())


def test_reports_page_fits_a_390px_phone_and_text_rows_stay_short(
        live_app: str, app: Any, phone_page: Any, reported: str) -> None:
    long_reason = ("the text could not be composed, nothing was sent: struct.error: 'I' format requires "
                   "0 <= number <= 4294967295")
    app.repos.outbox.create_once(OutboxItem(
        id=f"{reported}|V3|booked|0", bucket=hour_bucket(m(-30)), appointment_key=f"{reported}|V3",
        environment_id=reported, kind="booked", revision=0, due_utc=m(-30), state="failed", reason=long_reason))
    visit = app.repos.appointments.get(f"{reported}|V3")
    app.repos.appointments.replace(dataclasses.replace(visit, outbox_refs=[
        {"id": f"{reported}|V3|booked|0", "bucket": hour_bucket(m(-30))}]))
    app.report_recorder.apply(ReportUpdate("appointment", f"{reported}|V3"))
    sign_in(phone_page, live_app, READER, ("ReportsReader",))
    phone_page.goto(f"{live_app}/api/portal/reports?{QUERY.format(env=reported)}")
    phone_page.wait_for_selector("#report[data-loaded=true]")
    save_screenshot(phone_page, "reports-page-390")
    overflow = horizontal_overflow(phone_page)
    assert overflow["extra"] == 0 and overflow["sticking_out"] == [], overflow
    # Each text is a card of label: value lines, the reason across the card's whole width (as a squeezed column
    # it wrapped a word per line, ~220 px per row), and no word of any card is broken across lines.
    assert card_labels(phone_page, "#texts-table") == ["Day", "Appointment", "Kind", "Language", "Segments", "State",
                                                       "Reason", "Number", "Sent (UTC)", "Delivery report (UTC)"]
    row = phone_page.locator("#texts-table tbody tr", has_text="struct.error")
    reason = row.locator("td").nth(6)
    assert reason.bounding_box()["width"] >= row.bounding_box()["width"] - 32  # minus the card's padding
    assert broken_words(phone_page, "#report tbody td") == []


def test_csv_export_parses_back_one_row_per_visit_and_text(live_app: str, app: Any, reported: str) -> None:
    headers = cookie_for(app, ["ReportsReader"])
    visits = requests.get(f"{live_app}/api/reports/visits.csv?{QUERY.format(env=reported)}", headers=headers,
                          timeout=30)
    assert visits.status_code == 200 and visits.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in visits.headers["Content-Disposition"]
    parsed = list(csv.DictReader(io.StringIO(visits.content.decode("utf-8-sig"))))
    assert [(r["appointment_id"], r["outcome"], r["duration_seconds"], r["lobby_wait_seconds"]) for r in parsed] == [
        ("V1", "completed", "1260", "240"), ("V2", "patient_never_joined", "", ""), ("V3", "nobody_joined", "", "")]
    assert parsed[0]["poor_call"] == "yes" and parsed[0]["within_allocation"] == "yes"
    texts = requests.get(f"{live_app}/api/reports/texts.csv?{QUERY.format(env=reported)}", headers=headers,
                         timeout=30)
    rows = list(csv.DictReader(io.StringIO(texts.content.decode("utf-8-sig"))))
    assert [(r["state"], r["reason"], r["recipient"]) for r in rows] == [
        ("delivered", "", "••23"), ("failed", "Unreachable destination", "••07")]


def test_who_may_not_see_the_reports_is_refused(live_app: str, app: Any, page: Any, reported: str) -> None:
    url = f"{live_app}/api/reports/visits?{QUERY.format(env=reported)}"
    anonymous = requests.get(url, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "NOT_SIGNED_IN"
    forged = requests.get(url, headers={"X-MS-CLIENT-PRINCIPAL": "e30="}, timeout=10)
    assert forged.status_code == 401 and forged.json()["code"] == "FORGED_PRINCIPAL"
    approver = requests.get(url, headers=cookie_for(app, ["Approver"]), timeout=10)
    assert approver.status_code == 403 and approver.json()["code"] == "ROLE_MISSING"
    admin = requests.get(url, headers=cookie_for(app, ["Admin"]), timeout=10)
    assert admin.status_code == 200 and admin.json()["total"] == 3
    bad = requests.get(f"{live_app}/api/reports/visits?from=2026-03-09&to=2026-03-01",
                       headers=cookie_for(app, ["ReportsReader"]), timeout=10)
    assert bad.status_code == 400 and bad.json()["detail"] == "The end date is before the start date."
    sign_in(page, live_app, READER, ("Approver",))
    response = page.goto(f"{live_app}/api/portal/reports")
    assert response is not None and response.status == 403
    assert page.locator("#denied-code").inner_text() == "ROLE_MISSING"
