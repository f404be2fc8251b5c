"""The one Jinja2 environment of the app and :func:`render`, which turns a template into a ``Page``."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from lib.visits.pages import Cookie, Page
from lib.web.policy import ContentPolicy
from lib.web.static import content_version

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC_PREFIX = "/api/static/"


def static_url(relative: str) -> str:
    """The URL of a static file, with its content hash so browsers may cache it for good."""
    version = content_version(relative)
    if version is None:
        raise LookupError(f"no static file {relative!r} (is the web client built? ./dev setup builds it)")
    return f"{STATIC_PREFIX}{relative}?v={version}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Autoescaping for every template; an undefined variable is an error, not an empty string."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html", "xml", "j2"), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    return env


def render_text(template: str, context: Mapping[str, Any]) -> str:
    """The rendered text of ``template`` (HTML escaped by autoescaping)."""
    return environment().get_template(template).render(**context)


def render(
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    policy: ContentPolicy | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: tuple[Cookie, ...] = (),
) -> Page:
    """A :class:`Page` from ``template`` with its CSP header (``policy``, strict by default).

    Page data goes into the template's markup (escaped) or ``data-`` attributes, never into inline script.
    """
    all_headers = {"Content-Security-Policy": (policy or ContentPolicy()).header()}
    all_headers.update(headers or {})
    return Page(render_text(template, context or {}), status=status, headers=all_headers, cookies=cookies)
