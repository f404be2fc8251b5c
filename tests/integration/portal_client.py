"""A signed-in portal user for the HTTP tests: a ``requests.Session`` that signs in through the local sign-in
form and sends the CSRF token of ``GET /api/config/session`` on every change, the way a script would."""

from __future__ import annotations

import importlib.util
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]


class PortalUser:
    """One user with ``roles`` (any of Admin, Approver, ReportsReader) signed in to the portal at ``base``."""

    def __init__(self, base: str, name: str, roles: tuple[str, ...], ca: str) -> None:
        self.base, self.name = base, name
        self.session = requests.Session()
        self.session.verify = ca
        answer = self.session.post(f"{base}/api/portal/signin", data={"name": name, "roles": list(roles)},
                                   allow_redirects=False)
        assert answer.status_code == 303, answer.text
        session = self.session.get(f"{base}/api/config/session")
        assert session.status_code == 200, session.text
        self.csrf = session.json()["csrfToken"]

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.base + path, allow_redirects=False, **kw)

    def send(self, method: str, path: str, body: Any = None, *, csrf: bool = True, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return self.session.request(method, self.base + path, json=body, headers=headers, allow_redirects=False,
                                    **kw)


@contextmanager
def served_app(public: str, module_name: str) -> Iterator[str]:
    """A private copy of ``function_app`` on the dev runner at ``public`` (HTTP only; an app object is indexed
    once, and other tests index ``function_app.app`` themselves)."""
    from local.devrunner import DevRunner

    spec = importlib.util.spec_from_file_location(module_name, ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    port = urllib.parse.urlsplit(public).port
    dev = DevRunner(module.app, port=port or 7171, host_json=ROOT / "host.json", timers=False, queues=False)
    dev.start()
    try:
        yield public
    finally:
        dev.stop(timeout=10)


def problem_code(response: requests.Response) -> str:
    """The ``code`` of a problem+json answer."""
    assert response.headers.get("content-type", "").startswith("application/problem+json"), response.text
    return response.json()["code"]
