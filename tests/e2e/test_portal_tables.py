"""The portal's tables on a 390 px phone and a 1280 px screen (Debian chromium): on the phone each row is a card
of label: value lines (CSS on the cells' ``data-label``, no script), on the wide screen the table as it is. On
both, the page never scrolls sideways, no word of a cell is broken across lines, and axe finds nothing serious.
Measured from element geometry (``tests/e2e/layout.py``); screenshots are saved for people, not compared."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import DESKTOP, PHONE, assert_clean, sign_in
from tests.e2e.layout import broken_words, horizontal_overflow
from tests.integration.portal_client import PortalUser
from tests.support.writeback import epic_writeback_environment, refused_writeback, release_epic_url

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

#: Every portal page with a table of several columns (``{env}``: the module's environment).
PAGES = {
    "environments": "/api/portal/environments",
    "environment": "/api/portal/environments/{env}",
    "audit": "/api/portal/audit?environmentId={env}",
    "writeback-overview": "/api/portal/writeback-failures",
    "writeback-failures": "/api/portal/environments/{env}/writeback-failures",
    "phone-numbers": "/api/portal/phone-numbers",
    "records": "/api/portal/environments/{env}/records",
}

#: Per cell: its display, its width against its row's, and the label the phone shows above it.
_CELLS = """() => [...document.querySelectorAll('table.cards')].filter(t => t.getClientRects().length).map(t => ({
  table: `${t.id}.${t.className}`, display: getComputedStyle(t).display,
  headers: [...t.querySelectorAll('thead th')].map(th => th.textContent.trim()),
  cells: [...t.querySelectorAll('tbody tr:first-child > td')].map(td => ({
    label: td.dataset.label, shown: getComputedStyle(td, '::before').content,
    width: td.getBoundingClientRect().width, row: td.parentElement.clientWidth}))}))"""


@pytest.fixture(scope="module")
def env(app: Any, live_app: str, service_settings: dict[str, str]) -> Iterator[Any]:
    """An approved environment with a certificate, a write-back failure Epic refused and an audited change."""
    env_id = f"cards-{uuid.uuid4().hex[:8]}"
    config = epic_writeback_environment(app, env_id, service_settings,
                                        display_name="Contoso Health Northwestern Regional Telehealth")
    refused_writeback(app, config, service_settings, csn=str(uuid.uuid4().int % 10**10))
    admin = PortalUser(live_app, "virtual-visits-administrator@contoso-health.example", ("Admin",),
                       service_settings["REQUESTS_CA_BUNDLE"])
    changed = admin.send("PUT", f"/api/config/environments/{env_id}/sms",
                         {"rate_per_minute": 150, "consentSendOnBehalf": True, "consentPatientsAgreed": True})
    assert changed.status_code == 200, changed.text
    yield config
    release_epic_url(app, env_id)


@pytest.fixture(scope="module")
def screens(browser: Any, live_app: str) -> Iterator[dict[str, tuple[Any, list[str]]]]:
    """A signed-in admin's page on a phone and on a wide screen, with the console messages of each."""
    opened: dict[str, tuple[Any, list[str]]] = {}
    contexts = []
    for name, options in (("phone", PHONE), ("desktop", DESKTOP)):
        context = browser.new_context(**options)
        contexts.append(context)
        page, console = context.new_page(), []
        page.on("console", lambda m, console=console: console.append(f"{m.type}: {m.text}"))
        sign_in(page, live_app)
        opened[name] = (page, console)
    yield opened
    for context in contexts:
        context.close()


@pytest.mark.parametrize("screen", ["phone", "desktop"])
@pytest.mark.parametrize("name", list(PAGES))
def test_portal_tables_read_well_without_sideways_scroll_or_broken_words(
        live_app: str, env: Any, screens: dict[str, tuple[Any, list[str]]], name: str, screen: str) -> None:
    page, console = screens[screen]
    response = page.goto(live_app + PAGES[name].format(env=env.id))
    assert response is not None and response.status == 200
    tables = page.evaluate(_CELLS)
    assert tables and all(t["cells"] for t in tables), tables  # every table shown has a row to read

    for table in tables:
        labelled = [c for c in table["cells"] if c["label"]]
        if screen == "phone":  # a card: each cell across the whole card, under its column's name
            assert table["display"] == "block", table["table"]
            assert [c["shown"] for c in labelled] == [f'"{c["label"]}"' for c in labelled]
            assert all(abs(c["width"] - c["row"]) <= 32 for c in table["cells"]), table  # minus the card's padding
        else:  # the table as it is: columns side by side, no labels repeated in the cells
            assert table["display"] == "table", table["table"]
            assert {c["shown"] for c in table["cells"]} == {"none"}, table
        assert [c["label"] for c in labelled] == table["headers"][:len(labelled)], table  # the header's words

    overflow = horizontal_overflow(page)
    assert overflow == {"extra": 0, "sticking_out": [], "wide_tables": []}, overflow
    shown_cells = ("table.cards tbody > tr > *" if screen == "phone" else "table.cards th, table.cards td") + (
        ", dl.summary > *")  # the environment's settings: label: value pairs too
    assert broken_words(page, shown_cells) == []  # on a phone the header row is kept for screen readers only
    assert_clean(page, f"portal-table-{name}-{page.viewport_size['width']}", console)
