"""What the launch and join services hand back to the HTTP trigger, and the HTML they render.

:class:`Redirect` and :class:`Page` are plain values (no ``azure.functions``); ``functions/launch.py`` turns
them into responses. Pages are rendered from templates by ``lib.web`` under a strict Content-Security-Policy
(the patient's pages: ``lib.visits.patient_pages``). Pages never show PHI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lib.smart.errors import LaunchError

#: Headers every page and redirect gets: no caching (pages hold join tokens), no Referer leaks of tokens.
BASE_HEADERS: dict[str, str] = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Cookie:
    """One ``Set-Cookie``: HttpOnly, short Max-Age.

    ``partitioned`` (the launch cookie on https, or on a loopback http URL, which browsers treat as secure):
    ``SameSite=None; Secure; Partitioned`` (CHIPS), so the cookie also works when the page runs inside a
    cross-site frame (Epic's web views) where third-party cookies are blocked: the browser keeps it in a jar of
    that top-level site only. Otherwise ``SameSite=Lax``, ``Secure`` when the public URL is https.
    """

    name: str
    value: str
    max_age: int
    path: str
    secure: bool
    partitioned: bool = False

    def header(self) -> str:
        """The ``Set-Cookie`` header value."""
        parts = [f"{self.name}={self.value}", f"Max-Age={self.max_age}", f"Path={self.path}", "HttpOnly"]
        if self.partitioned:
            parts += ["SameSite=None", "Secure", "Partitioned"]
        else:
            parts.append("SameSite=Lax")
            if self.secure:
                parts.append("Secure")
        return "; ".join(parts)


@dataclass(frozen=True)
class Redirect:
    """Send the browser to ``location`` (``302``). ``location`` never comes from the request."""

    location: str
    cookies: tuple[Cookie, ...] = ()
    status: int = 302


@dataclass(frozen=True)
class Page:
    """An HTML page with its status, extra headers (CSP...) and cookies."""

    html: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    cookies: tuple[Cookie, ...] = ()


def error_page(error: LaunchError, correlation_id: str, *, frame_ancestors: tuple[str, ...] = (),
               frame_anyone: bool = False) -> Page:
    """The one HTML rendering of a :class:`LaunchError`: the message, the code, the fix and a correlation ID.

    The admin hint is shown folded ("For your IT team"): it names settings and Epic/Entra records, never
    tokens or PHI, so the clinician can pass it on. Rendered from ``lib/web/templates/launch_error.html``.
    ``frame_ancestors``: who may show it in a frame besides us (the Epic origins); ``frame_anyone`` for the
    ``FRAME_NOT_ALLOWED`` page, which must be readable in the frame it refuses.
    """
    from lib.web import ContentPolicy, render

    headers = {"x-correlation-id": correlation_id}
    if error.retry_after:
        headers["Retry-After"] = str(error.retry_after)
    return render(
        "launch_error.html",
        {"message": error.user_message, "code": error.code, "correlation_id": correlation_id,
         "admin_hint": error.admin_hint,
         "retry_advice": retry_advice(error.retry_after) if error.retry_after else None},
        status=error.status, policy=ContentPolicy(allow_forms=False, frame_ancestors=frame_ancestors,
                                                   frame_anyone=frame_anyone),
        headers=headers,
    )


def retry_advice(seconds: int) -> str:
    """When to try again, in words: ``Try again in 45 seconds.``, ``... in about 2 minutes.``, ``... an hour.``"""
    if seconds < 60:
        return f"Try again in {max(1, seconds)} second{'s' if seconds != 1 else ''}."
    if seconds < 3600:
        minutes = round(seconds / 60)
        return f"Try again in about {minutes} minute{'s' if minutes != 1 else ''}."
    hours = round(seconds / 3600)
    return f"Try again in about {hours} hour{'s' if hours != 1 else ''}."
