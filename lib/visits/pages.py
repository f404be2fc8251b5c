"""What the launch and join services hand back to the HTTP trigger, and the HTML they render.

:class:`Redirect` and :class:`Page` are plain values (no ``azure.functions``); ``functions/launch.py`` turns
them into responses. Every page carries a strict Content-Security-Policy: inline scripts and styles are
fixed strings allowed by their SHA-256 hash, and page data travels in ``data-`` attributes, HTML-escaped.
Pages never show PHI: the organization's name and the visit time only.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


def csp_hash(source: str) -> str:
    """The CSP source expression ``'sha256-...'`` of an inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;"
    "color:#1b1b1b}h1{font-size:1.5rem}button,.button{font-size:1.1rem;padding:.6rem 1.2rem;margin:.3rem 0;"
    "border-radius:.4rem;border:1px solid #444;background:#f3f3f3;cursor:pointer}#join-button{background:#464eb8;"
    "color:#fff;border-color:#464eb8}video{width:100%;max-width:20rem;background:#000;border-radius:.4rem}"
    "code{background:#f3f3f3;padding:0 .3rem}details{margin-top:1.5rem;color:#444}"
)


def _document(title: str, body: str, *, script: str | None = None) -> str:
    script_tag = f"<script>{script}</script>" if script else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}{script_tag}</body></html>"
    )


def _csp(*, script: str | None = None, connect_self: bool = False, media: bool = False,
         frame_ancestors: tuple[str, ...] = ()) -> str:
    ancestors = " ".join(dict.fromkeys(("'self'", *frame_ancestors)))
    parts = ["default-src 'none'", f"style-src {csp_hash(STYLE)}", "img-src 'self' data:", "base-uri 'none'",
             "form-action 'none'", f"frame-ancestors {ancestors}"]
    if script:
        parts.append(f"script-src {csp_hash(script)}")
    if connect_self:
        parts.append("connect-src 'self'")
    if media:
        parts.append("media-src 'self' blob: mediastream:")
    return "; ".join(parts)


def error_page(error: LaunchError, correlation_id: str, *, frame_ancestors: tuple[str, ...] = ()) -> Page:
    """The one HTML rendering of a :class:`LaunchError`: the message, the code, the fix and a correlation ID.

    The admin hint is shown folded ("For your IT team"): it names settings and Epic/Entra records, never
    tokens or PHI, so the clinician can pass it on. Rendered from ``lib/web/templates/launch_error.html``.
    ``frame_ancestors``: who may show it in a frame besides us (the Epic origins; ``*`` for the
    ``FRAME_NOT_ALLOWED`` page, which must be readable in the frame it refuses).
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
        status=error.status, policy=ContentPolicy(allow_forms=False, frame_ancestors=frame_ancestors),
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


JOIN_SCRIPT = """(function(){
var root=document.getElementById('join');
var eventsUrl=root.getAttribute('data-events'),joinUrl=root.getAttribute('data-join-url'),
attempt=root.getAttribute('data-attempt');
var statusEl=document.getElementById('device-status'),video=document.getElementById('preview');
function post(type){return fetch(eventsUrl,{method:'POST',credentials:'omit',keepalive:true,
headers:{'Content-Type':'application/json'},body:JSON.stringify({type:type,attempt:attempt})})
.catch(function(){});}
document.getElementById('test-devices').addEventListener('click',function(){
if(!navigator.mediaDevices||!navigator.mediaDevices.getUserMedia){
statusEl.textContent='This browser cannot test the camera and microphone.';return;}
navigator.mediaDevices.getUserMedia({audio:true,video:true}).then(function(stream){
video.srcObject=stream;video.hidden=false;root.setAttribute('data-device-test','passed');
post('device_test_passed');
statusEl.textContent='Your camera and microphone are working.';}).catch(function(e){
root.setAttribute('data-device-test','failed');post('device_test_failed');
statusEl.textContent='We could not use your camera or microphone ('+e.name+'). Check the browser permissions.';});});
document.getElementById('test-speaker').addEventListener('click',function(){
var C=window.AudioContext||window.webkitAudioContext;if(!C){return;}
var ctx=new C(),osc=ctx.createOscillator();osc.frequency.value=440;osc.connect(ctx.destination);osc.start();
setTimeout(function(){osc.stop();ctx.close();},800);
statusEl.textContent='You should have heard a short tone.';});
document.getElementById('join-button').addEventListener('click',function(){
this.disabled=true;var gone=false;function go(){if(!gone){gone=true;window.location.href=joinUrl;}}
var timer=setTimeout(go,3000);post('connected').then(function(){clearTimeout(timer);go();});});
})();"""


def format_visit_time(start_utc: datetime | None, time_zone: str) -> str | None:
    """``start_utc`` in the environment's zone, e.g. ``Tuesday, March 3, 2026 at 2:30 PM EST``."""
    if start_utc is None:
        return None
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = start_utc.astimezone(zone)
    hour = local.strftime("%I").lstrip("0") or "12"
    return f"{local:%A}, {local:%B} {local.day}, {local.year} at {hour}:{local:%M} {local:%p} {local.tzname()}"


def join_page(*, organization: str, visit_time: str | None, join_url: str, events_url: str, attempt: str,
              frame_ancestors: tuple[str, ...] = ()) -> Page:
    """The patient's join page: device test (camera, microphone, speaker) and a Join button.

    The device test POSTs ``{"type": "device_test_passed" | "device_test_failed", "attempt": ...}`` to
    ``events_url`` (written back to the EHR, one event per result and page load).

    The button POSTs ``{"type": "connected", "attempt": ...}`` to ``events_url`` (relative to the page), then
    opens ``join_url`` (the Teams meeting; the patient waits in the lobby until admitted).
    """
    when = f'<p id="visit-time">{html.escape(visit_time)}</p>' if visit_time else ""
    body = (
        f'<main id="join" data-events="{html.escape(events_url)}" data-join-url="{html.escape(join_url)}" '
        f'data-attempt="{html.escape(attempt)}">'
        f'<h1>Your video visit with <span id="organization">{html.escape(organization)}</span></h1>{when}'
        "<section id=\"device-test\"><h2>Check your devices</h2>"
        "<p>Allow the camera and microphone when your browser asks.</p>"
        '<button type="button" id="test-devices">Test camera and microphone</button> '
        '<button type="button" id="test-speaker">Play a test sound</button>'
        '<p id="device-status" role="status"></p><video id="preview" autoplay muted playsinline hidden></video>'
        "</section><section><h2>Join</h2><p>You will wait in the lobby until your clinician lets you in.</p>"
        '<button type="button" id="join-button">Join the video visit</button>'
        f'<noscript><p><a class="button" href="{html.escape(join_url)}">Join the video visit</a></p></noscript>'
        "</section></main>"
    )
    headers = {
        "Content-Security-Policy": _csp(script=JOIN_SCRIPT, connect_self=True, media=True,
                                        frame_ancestors=frame_ancestors),
        "Permissions-Policy": "camera=(self), microphone=(self)",
    }
    return Page(_document("Your video visit", body, script=JOIN_SCRIPT), headers=headers)
