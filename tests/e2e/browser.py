"""Real-browser helpers: Debian's chromium driven by Playwright (``executable_path``), axe and screenshots.

Fixtures built on these live in ``tests/e2e/conftest.py``: ``browser`` (one per test session), ``page``
(a fresh desktop context per test), ``phone_page`` (a phone-sized touch context) and ``live_app`` (the
Function App served by the dev runner at the test profile's ``PUBLIC_BASE_URL``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
AXE_SOURCE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

#: Flags for a root, offline, headless machine (docs/architecture.md "Running without Azure"), plus fake camera
#: and microphone.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
)

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}

#: The WCAG 2.1 A/AA rules axe runs (best-practice rules are left out on purpose).
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")


def chromium_path() -> str:
    """Debian's chromium (``CHROMIUM`` overrides); ``./dev setup`` installs it."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("Chromium is not installed: run ./dev setup (it installs Debian's chromium)")
    return found


def axe_violations(page: Any, *, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 AA violations of ``page`` with one of ``impacts``, as ``{id, impact, targets}``.

    axe is evaluated through the DevTools protocol, which the page's CSP does not govern, so the page is
    checked exactly as served.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        list(AXE_TAGS),
    )
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "targets": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"] if v["impact"] in impacts
    ]


def save_screenshot(page: Any, name: str) -> Path:
    """A full-page PNG under ``test-artifacts/screenshots/`` (kept by CI as an artifact)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"
    path = ARTIFACTS / "screenshots" / f"{safe}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, base: str, name: str = "admin@contoso.example", roles: tuple[str, ...] = ("Admin",)) -> None:
    """Sign ``page`` in to the portal at ``base`` through the local sign-in form, as ``name`` with ``roles``."""
    page.goto(f"{base}/api/portal/signin")
    page.fill("#name", name)
    for role in roles:
        page.check(f"#role-{role}")
    page.click("button[type=submit]")
    page.wait_for_load_state()


def assert_clean(page: Any, name: str, console: list[str]) -> None:
    """No serious accessibility violation (axe), no CSP report in ``console``; then a screenshot ``name``."""
    assert axe_violations(page) == [], name
    assert not [m for m in console if "Content Security Policy" in m], console
    save_screenshot(page, name)
