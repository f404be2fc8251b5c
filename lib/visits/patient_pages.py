"""The patient's pages: the join page of a visit (every state it can be in) and the device test opened on
its own from the EHR's device-test record. Rendered from ``lib/web/templates/patient/`` in the patient's
language; the browser client (``web/patient``, bundled into ``/api/static/build/``) reads its data from
``data-`` attributes of ``#app``.

Nothing personal on the page: the organization's name and the visit's local time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.models import Appointment, EnvironmentConfig
from lib.visits.pages import Page
from lib.visits.visit_state import VisitState
from lib.web import ContentPolicy, render
from lib.web.strings import accept_language, languages, local_datetime, local_time, pick_language, text

#: Where the Calling SDK 2.0 talks (configuration, registration, the conversation service, telemetry), as
#: observed in a browser: ``ecs.communication.microsoft.com``, ``go.trouter.communication.microsoft.com``,
#: ``edge.skype.com``, ``api.flightproxy.skype.com``, ``ic3.events.data.microsoft.com``: the page's
#: ``connect-src`` when it joins calls.
ACS_CONNECT_SOURCES = ("https://*.microsoft.com", "wss://*.microsoft.com", "https://*.skype.com",
                       "wss://*.skype.com", "https://*.communication.azure.com")
#: The problem states a visit page can show instead of a visit (link, visit or service problems; too many
#: wrong links from this address), with their HTTP status.
PROBLEM_STATUS = {"invalid": 404, "expired": 410, "cancelled": 410, "busy": 503, "rate_limited": 429,
                  "unavailable": 403}
PROBLEMS = tuple(PROBLEM_STATUS)
PING_PATH = "/api/devicetest/ping"
PAYLOAD_PATH = "/api/devicetest/payload"


@dataclass(frozen=True)
class PatientPageContext:
    """What every patient page needs from the request: the language asked for (``?lang=``), the browser's
    ``Accept-Language``, the link token (for the page's API URLs), the relays to probe and now (UTC)."""

    requested_language: str | None
    accept_language: str | None
    token: str | None
    relay_urls: tuple[str, ...]
    now: datetime


def content_security_policy(*, calls: bool, frame_ancestors: tuple[str, ...] = ()) -> ContentPolicy:
    """The page's CSP: our own script and styles only; media from the camera; the Calling SDK's hosts and
    its blob workers when the page joins calls; framable by the environment's Epic origins."""
    return ContentPolicy(connect_src=ACS_CONNECT_SOURCES if calls else (),
                         media_src=("'self'", "blob:", "mediastream:"), img_src=("blob:",),
                         worker_src=("'self'", "blob:"), allow_forms=False, frame_ancestors=frame_ancestors)


PERMISSIONS = {"Permissions-Policy": "camera=(self), microphone=(self), autoplay=(self)"}


def _language(context: PatientPageContext, visit_language: str | None, default: str | None) -> str:
    """The switcher's choice, the visit's (PID-15), the browser's, then the environment's default."""
    return pick_language([context.requested_language, visit_language, *accept_language(context.accept_language),
                          default])


def _common(context: PatientPageContext, language: str) -> dict[str, Any]:
    return {
        "lang": language,
        "t": lambda key, **values: text(language, key, **values),
        "languages": [{"code": code, "name": name, "current": code == language} for code, name in languages()],
        "ping_url": PING_PATH,
        "payload_url": PAYLOAD_PATH,
        "relays": " ".join(context.relay_urls),
    }


def visit_page(context: PatientPageContext, *, environment: EnvironmentConfig | None = None,
               appointment: Appointment | None = None, state: VisitState | None = None,
               problem: str | None = None, attempt: str = "", frame_ancestors: tuple[str, ...] = (),
               retry_after: int = 30) -> Page:
    """The join page: a ``problem`` (one of :data:`PROBLEMS`) without a visit, or the visit in ``state``.
    ``retry_after``: the ``Retry-After`` (seconds) of a ``busy`` or ``rate_limited`` page."""
    default = environment.sms.default_language if environment is not None else None
    language = _language(context, appointment.language if appointment else None, default)
    page = _common(context, language)
    phase = problem or (state.phase if state else "invalid")
    when = opens = None
    if appointment is not None and environment is not None and appointment.start_utc is not None:
        when = local_datetime(appointment.start_utc, environment.time_zone, language)
        if state is not None and state.opens_utc is not None:
            same_day = state.opens_utc.date() == context.now.date()
            opens = (local_time if same_day else local_datetime)(state.opens_utc, environment.time_zone, language)
    page.update(
        mode="visit",
        phase=phase,
        organization=environment.display_name if environment else None,
        visit_time=when,
        opens=opens,
        moved=bool(state and state.moved and phase in ("open", "too_early")),
        attempt=attempt,
        events_url=f"./{context.token}/events" if context.token and not problem else "",
        call_url=f"./{context.token}/call" if context.token and not problem else "",
    )
    status = PROBLEM_STATUS.get(phase, 200)
    headers = {**PERMISSIONS, **({"Retry-After": str(retry_after)} if status in (429, 503) else {})}
    return render("patient/visit.html", page, status=status, headers=headers,
                  policy=content_security_policy(calls=phase == "open", frame_ancestors=frame_ancestors))


def device_test_page(context: PatientPageContext, *, environment: EnvironmentConfig | None,
                     unchecked: bool = False, frame_ancestors: tuple[str, ...] = ()) -> Page:
    """The device test on its own (Epic's device-test record): no visit, nothing written back. Without an
    ``environment`` the page says the link does not work (404), unless the environment is ``unchecked`` (it
    could not be read): then the test runs without the organization's name."""
    default = environment.sms.default_language if environment is not None else None
    language = _language(context, None, default)
    page = _common(context, language)
    runs = environment is not None or unchecked
    page.update(mode="standalone", phase="open" if runs else "invalid", opens=None,
                organization=environment.display_name if environment else None)
    return render("patient/device_test.html", page, status=200 if runs else 404, headers=PERMISSIONS,
                  policy=content_security_policy(calls=False, frame_ancestors=frame_ancestors))
