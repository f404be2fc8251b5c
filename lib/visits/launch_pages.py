"""The launch's own pages: the auto-submitting authorization request (SMART ``authorize-post``).

Error pages are :func:`lib.visits.pages.error_page`; the patient's join page is :mod:`lib.visits.join`.
"""

from __future__ import annotations

from lib.smart.authorize import AuthorizeRequest
from lib.visits.framing import origin_of
from lib.visits.pages import Cookie, Page
from lib.web import ContentPolicy, render


def authorize_post_page(request: AuthorizeRequest, *, redirect_origins: tuple[str, ...],
                        frame_ancestors: tuple[str, ...], cookies: tuple[Cookie, ...]) -> Page:
    """The page that POSTs the authorization request to the EHR's authorize endpoint.

    Its ``form-action`` lists every origin the form's navigation passes through, because Chromium checks
    ``form-action`` on each redirect after the POST: the EHR's authorize endpoint, our own origin (the
    callback), and ``redirect_origins`` (where the callback sends the browser on: the Microsoft 365 sign-in
    and the Teams meeting). ``frame_ancestors``: the environment's Epic origins.
    """
    authorize_origin = origin_of(request.endpoint)
    assert authorize_origin is not None
    policy = ContentPolicy(form_action=(authorize_origin, *redirect_origins), frame_ancestors=frame_ancestors)
    return render("authorize_post.html", {"endpoint": request.endpoint, "params": request.params},
                  policy=policy, cookies=cookies)
