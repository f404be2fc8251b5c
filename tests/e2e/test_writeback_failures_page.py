"""The write-back failures page in a real browser (Debian chromium): Epic (the stand-in) refuses a participant
status, the admin finds it through the portal's navigation with Epic's reason, replays it while Epic still
refuses (it comes back), the cause is fixed on Epic's side, "replay all" sends it, and Epic receives it once.
Each state is checked with axe and saved as a screenshot."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.browser import assert_clean, sign_in
from tests.support.writeback import (
    WRITEBACK_PREFIX,
    drain_writeback,
    epic_status_calls,
    epic_writeback_environment,
    release_epic_url,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

#: How long a page may take to come back under load (milliseconds).
WAIT = 30_000


@pytest.fixture
def env(app: Any, live_app: str, service_settings: dict[str, str]) -> Iterator[Any]:
    env_id = f"wbe-{uuid.uuid4().hex[:8]}"
    app.queues.client("visit-events").clear_messages()
    yield epic_writeback_environment(app, env_id, service_settings)
    release_epic_url(app, env_id)
    requests.delete(f"{service_settings['EPIC_STANDIN_URL']}/_standin/faults",
                    verify=service_settings["REQUESTS_CA_BUNDLE"], timeout=10)


def test_admin_sees_a_refused_write_back_replays_it_after_the_fix_and_epic_gets_it_once(
        live_app: str, page: Any, console_messages: list[str], app: Any, env: Any,
        service_settings: dict[str, str]) -> None:
    from lib.models import Appointment

    epic, ca = service_settings["EPIC_STANDIN_URL"], service_settings["REQUESTS_CA_BUNDLE"]
    # Epic refuses every status for now (a permanent 400 with its reason), as a misconfigured Epic would.
    requests.post(f"{epic}/_standin/faults", verify=ca, timeout=10,
                  json={"path_prefix": WRITEBACK_PREFIX, "responses": [400] * 5}).raise_for_status()
    csn = str(uuid.uuid4().int % 10**10)
    start = datetime.now(UTC).replace(microsecond=0)
    visit = Appointment(env.id, csn, "booked", start, start + timedelta(minutes=30), 30, "America/New_York")
    event = app.visit_events.record(visit, event_type="connected", role="provider", participant_id="E1001",
                                    attempt="1")
    drain_writeback(app, visit.key)  # the real write-back trigger: Epic answers 400

    sign_in(page, live_app, "ops-admin@contoso.example")
    page.get_by_role("link", name="Write-back failures").click()
    page.locator(f'a[href="/api/portal/environments/{env.id}/writeback-failures"]').click()
    row = page.locator(f'tr[data-event-id="{event.id}"]')
    assert csn in row.inner_text() and "Clinician E1001" in row.inner_text() and "Connected" in row.inner_text()
    assert row.locator(".epic-detail").inner_text() == "scripted fault 400"
    assert page.locator("#settings-ok").is_visible()
    assert_clean(page, "writeback-01-failure-listed", console_messages)

    # Replayed while Epic still refuses: it leaves the list, then comes back with its second attempt.
    # Each click posts a form and follows the redirect: wait for that page, never read the one before it.
    with page.expect_navigation():
        row.get_by_role("button", name=f"Replay: Connected, Clinician, appointment {csn}").click()
    expect(page.locator('#replay-result [data-outcome="requeued"]')).to_have_count(1, timeout=WAIT)
    expect(page.locator(f'tr[data-event-id="{event.id}"]')).to_have_count(0, timeout=WAIT)
    drain_writeback(app, visit.key)
    page.reload()
    expect(page.locator(f'tr[data-event-id="{event.id}"] td').nth(4)).to_have_text("2", timeout=WAIT)

    # The cause is fixed on Epic's side; replay everything of this environment.
    requests.delete(f"{epic}/_standin/faults", verify=ca, timeout=10).raise_for_status()
    with page.expect_navigation():
        page.click("#replay-all")
    expect(page.locator("#no-failures")).to_be_visible(timeout=WAIT)
    expect(page.locator("#replay-result")).to_contain_text("queued to be written to Epic again", timeout=WAIT)
    assert_clean(page, "writeback-02-replayed", console_messages)
    drain_writeback(app, visit.key)
    assert [(c["ExternalID"], c["ConnectionStatus"]) for c in epic_status_calls(epic, ca, csn)] == [("E1001", "1")]
    page.reload()
    expect(page.locator("#no-failures")).to_be_visible(timeout=WAIT)
    assert page.locator("tr.failure").count() == 0
