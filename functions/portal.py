"""HTTP triggers of the configuration portal's pages (``/api/portal/...``), served from templates over the same
services as the JSON API (``functions/admin.py``). Forms post back here and work without JavaScript.
"""

from __future__ import annotations

import logging
import urllib.parse

import azure.functions as func

from functions.dependencies import services
from functions.http import correlation_id, problem
from functions.observability import observed
from functions.portal_access import Denied, authorize, problem_for

bp = func.Blueprint()
log = logging.getLogger(__name__)
ANON = func.AuthLevel.ANONYMOUS


@bp.function_name("portal_approval_callback")
@bp.route(route="portal/approvals/callback", methods=["GET"], auth_level=ANON)
@observed("portal_approval_callback")
def portal_approval_callback(req: func.HttpRequest) -> func.HttpResponse:
    """The ``redirect_uri`` of the approver's Epic sign-in: finish it, then show the decision page."""
    from lib.config.approvals import ApprovalFailed

    try:
        principal = authorize(req, "Approver")
        query = {k: v for k, v in req.params.items() if isinstance(v, str)}
        proof = services().portal.approvals.complete(query, principal)
    except Denied as exc:
        return problem_for(req, exc)
    except ApprovalFailed as exc:
        return problem(422, "Approval not possible", exc.reason, correlation=correlation_id(req),
                       code="APPROVAL_FAILED")
    target = "/api/portal/approvals/review?" + urllib.parse.urlencode(
        {"environmentId": proof["environmentId"], "url": proof["url"], "proof": proof["id"]})
    return func.HttpResponse(status_code=303, headers={"Location": target, "Cache-Control": "no-store"})


@bp.function_name("portal_dev_signin")
@bp.route(route="portal/signin", methods=["POST"], auth_level=ANON)
@observed("portal_dev_signin")
def portal_dev_signin(req: func.HttpRequest) -> func.HttpResponse:
    """The local development sign-in (``PORTAL_DEV_SIGNIN``, local emulators only): form ``name`` and ``roles``
    -> a signed cookie, then the portal. Refused (404) anywhere else."""
    from functions.portal_access import form_body
    from lib.config.access import DEV_COOKIE, DEV_SESSION_SECONDS, ROLES

    access = services().portal.access
    if not access.dev_signin:
        return problem(404, "Not found", "The local sign-in exists only when the app runs against the local "
                                         "emulators.", correlation=correlation_id(req), code="NOT_FOUND")
    try:
        form = form_body(req, max_bytes=4096)
    except Denied as exc:
        return problem_for(req, exc)
    name = (form.get("name") or [""])[0].strip()
    roles = [r for r in form.get("roles", []) if r in ROLES]
    if not access.valid_dev_name(name):
        return problem(400, "Bad request", "Enter a name: letters, digits and . _ @ + - only.",
                       correlation=correlation_id(req), code="BAD_NAME")
    cookie = f"{DEV_COOKIE}={access.dev_cookie(name, roles)}; Max-Age={DEV_SESSION_SECONDS}; Path=/api; HttpOnly; " \
             "SameSite=Lax" + ("; Secure" if access.secure_cookies else "")
    return func.HttpResponse(status_code=303, headers={"Location": "/api/portal", "Set-Cookie": cookie,
                                                       "Cache-Control": "no-store"})
