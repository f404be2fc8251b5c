"""Two admins editing the same environment at once (dev runner, Cosmos-compatible server): the second save is
refused with "changed by someone else", never silently written over the first. The edit forms carry the version
they opened (the document's ETag, hidden field ``version``); the JSON API serves ``ETag`` and honours
``If-Match`` with a 412 problem."""

from __future__ import annotations

import importlib.util
import secrets
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.integration.portal_client import PortalUser, problem_code
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFLICT = "changed by someone else since you opened it"


@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    from local.devrunner import DevRunner

    spec = importlib.util.spec_from_file_location("function_app_edit_conflicts", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    public = service_settings["PUBLIC_BASE_URL"]
    dev = DevRunner(module.app, port=urllib.parse.urlsplit(public).port or 7171, host_json=ROOT / "host.json",
                    timers=False, queues=False)
    dev.start()
    try:
        yield public
    finally:
        dev.stop(timeout=10)


@pytest.fixture
def admins(runner: str, service_settings: dict[str, str]) -> tuple[PortalUser, PortalUser]:
    ca = service_settings["REQUESTS_CA_BUNDLE"]
    return (PortalUser(runner, "alice@contoso.example", ("Admin",), ca),
            PortalUser(runner, "bob@contoso.example", ("Admin",), ca))


@pytest.fixture
def environment(app: Any) -> Any:
    """An environment that passes every portal rule (so a save is refused only for the conflict)."""
    from lib.models import SmsSettings

    env_id = f"c-{secrets.token_hex(5)}"
    return make_environment(app, env_id, sms=SmsSettings(enabled=False),
                            fhir_base_urls=(f"https://fhir.contoso.example/{env_id}/api/FHIR/R4",))


class _Form(HTMLParser):
    """The fields a browser would submit from the page's form with ``action`` (text, hidden, checked boxes,
    textareas, selected options)."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action, self.inside, self.fields = action, False, []  # type: ignore[var-annotated]
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("action") == self.action
        if not self.inside or not a.get("name"):
            return
        name = a["name"] or ""
        if tag == "input" and a.get("type") in ("checkbox", "radio"):
            if "checked" in a:
                self.fields.append((name, a.get("value") or "on"))
        elif tag == "input":
            self.fields.append((name, a.get("value") or ""))
        elif tag == "textarea":
            self._textarea = name
            self.fields.append((name, ""))
        elif tag == "select":
            self._select = name

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            name, value = self.fields[-1]
            self.fields[-1] = (name, value + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self.inside = False

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def form_of(user: PortalUser, page: str, action: str) -> list[tuple[str, str]]:
    answer = user.get(page)
    assert answer.status_code == 200, answer.text
    parser = _Form(action)
    parser.feed(answer.text)
    return parser.fields


def replaced(fields: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    assert any(n == name for n, _ in fields), name
    return [(n, value if n == name else v) for n, v in fields]


def test_the_second_of_two_simultaneous_environment_edits_is_refused_and_the_first_kept(
        admins: tuple[PortalUser, PortalUser], environment: Any, app: Any) -> None:
    alice, bob = admins
    page, action = f"/api/portal/environments/{environment.id}/edit", f"/api/portal/environments/{environment.id}"
    alices, bobs = form_of(alice, page, action), form_of(bob, page, action)  # both open the form
    assert dict(alices)["version"] and dict(alices)["version"] == dict(bobs)["version"]

    saved = alice.session.post(alice.base + action, data=replaced(alices, "display_name", "Alice Health"),
                               allow_redirects=False)
    assert saved.status_code == 303, saved.text
    refused = bob.session.post(bob.base + action, data=replaced(bobs, "display_name", "Bob Health"),
                               allow_redirects=False)
    assert refused.status_code == 409
    assert CONFLICT in refused.text and f'href="{page}"' in refused.text
    assert 'value="Bob Health"' in refused.text  # what Bob typed is still on the page
    assert app.portal.environments.get(environment.id).display_name == "Alice Health"

    fresh = form_of(bob, page, action)  # Bob reloads: Alice's change and a new version
    assert dict(fresh)["display_name"] == "Alice Health" and dict(fresh)["version"] != dict(bobs)["version"]
    again = bob.session.post(bob.base + action, data=replaced(fresh, "display_name", "Bob Health"),
                             allow_redirects=False)
    assert again.status_code == 303
    assert app.portal.environments.get(environment.id).display_name == "Bob Health"


def test_the_second_of_two_simultaneous_sms_edits_is_refused(admins: tuple[PortalUser, PortalUser],
                                                             environment: Any, app: Any) -> None:
    alice, bob = admins
    page = action = f"/api/portal/environments/{environment.id}/sms"
    alices, bobs = form_of(alice, page, action), form_of(bob, page, action)
    saved = alice.session.post(alice.base + action, allow_redirects=False,
                               data=replaced(alices, "reminder_offsets_minutes", "1440, 30"))
    assert saved.status_code == 303, saved.text
    refused = bob.session.post(bob.base + action, allow_redirects=False,
                               data=replaced(bobs, "reminder_offsets_minutes", "60"))
    assert refused.status_code == 409 and CONFLICT in refused.text
    assert app.portal.environments.get(environment.id).sms.reminder_offsets_minutes == (1440, 30)


def test_the_api_serves_an_etag_and_refuses_a_stale_if_match_with_412(admins: tuple[PortalUser, PortalUser],
                                                                     environment: Any, app: Any) -> None:
    alice, bob = admins
    path = f"/api/config/environments/{environment.id}"
    read = alice.get(path)
    etag = read.headers["ETag"]
    assert read.status_code == 200 and etag
    first = alice.send("PATCH", path, {"display_name": "Alice Health"}, headers={"If-Match": etag})
    assert first.status_code == 200 and first.json()["display_name"] == "Alice Health"
    assert first.headers["ETag"] != etag
    stale = bob.send("PATCH", path, {"display_name": "Bob Health"}, headers={"If-Match": etag})
    assert stale.status_code == 412 and problem_code(stale) == "EDIT_CONFLICT"
    assert "changed by someone else" in stale.json()["detail"]
    sms = bob.send("PUT", f"{path}/sms", {"reminder_offsets_minutes": [60]}, headers={"If-Match": etag})
    assert sms.status_code == 412 and problem_code(sms) == "EDIT_CONFLICT"
    stored = app.portal.environments.get(environment.id)
    assert stored.display_name == "Alice Health" and stored.sms.reminder_offsets_minutes != (60,)

    current = bob.send("PUT", f"{path}/sms", {"reminder_offsets_minutes": [60]},
                       headers={"If-Match": first.headers["ETag"]})
    assert current.status_code == 200, current.text
    assert app.portal.environments.get(environment.id).sms.reminder_offsets_minutes == (60,)
