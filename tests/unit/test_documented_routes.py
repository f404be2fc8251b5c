"""Every ``/api/...`` path the README and docs/*.md name is a route the app registers, with the method the docs
give (``PATCH /api/...``): an admin or a script following the docs never meets a 404 or a 405.

Paths are read from the text as written: placeholders (``{id}``, ``<environmentId>``, ``%CSN%``) stand for any
one segment, a query string is ignored, ``provider|patient`` names two routes, and a path ending in ``/`` or
``...`` is a prefix (some route must start with it). URLs of other services that also contain ``/api/`` (Epic's
FHIR base, Microsoft Learn pages) are not ours and are skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from local.devrunner import compile_route

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")

#: ``METHOD`` (optional), the token the path is in (up to ``/api/``), and the path.
_MENTION = re.compile(rf"(?:\b({'|'.join(METHODS)})\s+)?([^\s`\"'(\[]*?)(/api/[^\s`\"'),;\]]*)")
#: Tokens holding ``/api/`` that belong to another service.
_FOREIGN = re.compile(r"learn\.microsoft\.com|api-reference|/rest$")
_PLACEHOLDER = re.compile(r"^(?:\{[^}]*\}?|<[^>]*>?|%[A-Z_]+%?)$")


def _registered() -> list[tuple[re.Pattern[str], frozenset[str], str]]:
    import function_app

    prefix = json.loads((ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"]
    assert prefix == "api"
    routes = []
    # Built here rather than by get_functions(), which the host calls once: a second call in the same process
    # refuses every name as a duplicate (tests/unit/test_function_app.py makes that call).
    app = function_app.app
    for function in (builder.build(app.auth_level) for builder in app._function_builders):
        trigger = next(b for b in json.loads(function.get_function_json())["bindings"] if b["type"].endswith("Trigger"))
        if trigger["type"] == "httpTrigger":
            pattern, _ = compile_route(trigger["route"])
            routes.append((pattern, frozenset(m.upper() for m in trigger["methods"]), trigger["route"]))
    return routes


def documented() -> list[tuple[str, int, str | None, str]]:
    """``(file, line, method or None, path)`` of every ``/api/`` path the docs name as ours."""
    found = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            for method, before, path in _MENTION.findall(line):
                if _FOREIGN.search(before) or path.startswith("/api/FHIR"):
                    continue
                found.append((doc.relative_to(ROOT).as_posix(), number, method or None, path))
    return found


def _candidates(path: str) -> list[tuple[str, bool]]:
    """The concrete paths (without ``/api``) a documented path stands for, each with whether it is a prefix."""
    path = re.split(r"[?#]", path, maxsplit=1)[0].rstrip(".:")
    prefix = path.endswith("/") or path.endswith("...")
    segments = [s for s in path.removeprefix("/api").removesuffix("...").split("/") if s]
    paths = [""]
    for segment in segments:
        options = ["x1"] if _PLACEHOLDER.match(segment) else segment.split("|")
        paths = [f"{p}/{o}" for p in paths for o in options]
    return [(p, prefix) for p in paths]


def _matches(path: str, prefix: bool, method: str | None,
             routes: list[tuple[re.Pattern[str], frozenset[str], str]]) -> bool:
    for pattern, methods, template in routes:
        if method is not None and method not in methods:
            continue
        if prefix:
            if path == "" or ("/" + template.strip("/")).startswith(path.rstrip("/") + "/") \
                    or pattern.fullmatch(path.rstrip("/")):
                return True
        elif pattern.fullmatch(path):
            return True
    return False


MENTIONS = documented()


def test_the_docs_name_routes_at_all() -> None:
    assert len(MENTIONS) > 80 and any(m for _, _, m, _ in MENTIONS)


@pytest.mark.parametrize(("doc", "line", "method", "path"), MENTIONS,
                         ids=[f"{d}:{n}:{m or ''}{p}" for d, n, m, p in MENTIONS])
def test_every_documented_api_path_is_a_registered_route(doc: str, line: int, method: str | None,
                                                        path: str) -> None:
    routes = _registered_cached()
    missing = [p for p, prefix in _candidates(path) if not _matches(p, prefix, method, routes)]
    assert not missing, f"{doc}:{line} names {method or ''} {path}, which no function serves"


def test_a_wrong_route_or_method_is_caught() -> None:
    routes = _registered_cached()
    assert not _matches("/admin/environments/x1", False, "PATCH", routes)  # the route docs/presence.md once named
    assert not _matches("/config/environments/x1", False, "PUT", routes)  # a real route with a wrong method
    assert _matches("/config/environments/x1", False, "PATCH", routes)
    assert [p for p, _ in _candidates("/api/launch/provider|patient?env={environmentId}")] == [
        "/launch/provider", "/launch/patient"]


_ROUTES: list[tuple[re.Pattern[str], frozenset[str], str]] = []


def _registered_cached() -> list[tuple[re.Pattern[str], frozenset[str], str]]:
    if not _ROUTES:
        _ROUTES.extend(_registered())
    return _ROUTES
