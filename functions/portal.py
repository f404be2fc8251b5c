"""HTTP triggers of the configuration portal's pages (``/api/portal/...``), rendered on the server from
``lib/web/templates/portal`` over the same services as the JSON API (``functions/admin.py``).

Every form posts back here, carries the CSRF token and works without JavaScript; a refused form comes back with
a GOV.UK-style error summary linking to each field, and the message beside the field. Who may see what is
checked by :func:`functions.portal_access.authorize` on every route.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import azure.functions as func

from functions.dependencies import services
from functions.http import correlation_id
from functions.observability import observed
from functions.portal_access import Denied, authorize, form_body, principal_of

bp = func.Blueprint()
log = logging.getLogger(__name__)
ANON = func.AuthLevel.ANONYMOUS
ADMIN, APPROVER, REPORTS_READER = "Admin", "Approver", "ReportsReader"
STATUSES = {"pending": "Waiting for approval", "approved": "Approved", "changed": "Changed since approval",
            "sent_back": "Sent back"}
KIND_NAMES = {"booked": "Booked", "changed": "Time changed", "cancelled": "Cancelled", "reminder": "Reminder",
              "help": "Answer to HELP"}
CERTIFICATE_FORM_BYTES = 96 * 1024


# ---- rendering -----------------------------------------------------------------------------------------------
def _respond(page: Any, extra: dict[str, str] | None = None) -> func.HttpResponse:
    from lib.visits.pages import BASE_HEADERS

    headers = {**BASE_HEADERS, **page.headers, **(extra or {})}
    return func.HttpResponse(page.html, status_code=page.status, headers=headers, mimetype="text/html",
                             charset="utf-8")


def _page(req: func.HttpRequest, template: str, principal: Any, status: int = 200, *,
          form_origins: tuple[str, ...] = (), **context: Any) -> func.HttpResponse:
    """Render a portal page. ``form_origins``: where its forms may be redirected (the Epic sign-in): Chromium
    applies ``form-action`` to the redirects after a form post too."""
    from lib.web import ContentPolicy, render

    csrf = services().portal.csrf.issue(principal) if principal else ""
    base = {"user": principal, "csrf_token": csrf, "problems": [], "notice": None, "statuses": STATUSES,
            "section": "", "title": "Configuration portal"}
    page = render(template, {**base, **context}, status=status, policy=ContentPolicy(form_action=form_origins))
    return _respond(page, {"x-correlation-id": correlation_id(req)})


def _redirect(location: str, cookie: str | None = None) -> func.HttpResponse:
    headers = {"Location": location, "Cache-Control": "no-store"}
    if cookie:
        headers["Set-Cookie"] = cookie
    return func.HttpResponse(status_code=303, headers=headers)


def _error(req: func.HttpRequest, principal: Any, status: int, heading: str, detail: str, code: str | None = None,
           **context: Any) -> func.HttpResponse:
    return _page(req, "portal/error.html", principal, status, title=heading, heading=heading, detail=detail,
                 code=code, correlation_id=correlation_id(req), next_link=context.get("next_link"),
                 next_text=context.get("next_text", "Back"))


def _guarded(req: func.HttpRequest, action: Callable[[], func.HttpResponse]) -> func.HttpResponse:
    """Run a page action; map every failure to a page that says what to do (never a bare 500)."""
    from lib.config.access import Forbidden
    from lib.config.approvals import ApprovalFailed
    from lib.config.environments import ConfigurationRefused, EditConflict, EnvironmentExists, NotFound
    from lib.config.phone_numbers import PhoneNumberError
    from lib.config.writeback_failures import ReplayRefused
    from lib.store.environments import ConfigurationConflict
    from lib.store.errors import StoreUnavailable
    from lib.stored_settings import UnusableSetting

    back = _environment_url(req.route_params.get("environmentId", ""))
    try:
        return action()
    except Denied as exc:
        if exc.status == 401 and req.method == "GET" and exc.code == "NOT_SIGNED_IN":
            here = urllib.parse.urlsplit(req.url)
            back = here.path + (f"?{here.query}" if here.query else "")
            return _redirect("/api/portal/signin?" + urllib.parse.urlencode({"next": back}))
        return _error(req, _quiet_principal(req), exc.status, exc.title, exc.detail, exc.code,
                      next_link="/api/portal/signin" if exc.status == 401 else "/api/portal",
                      next_text="Sign in" if exc.status == 401 else "Back to the portal")
    except Forbidden as exc:
        return _error(req, _quiet_principal(req), 403, "Not allowed", exc.reason, "NOT_ASSIGNED",
                      next_link="/api/portal", next_text="Back to the portal")
    except NotFound as exc:
        return _error(req, _quiet_principal(req), 404, "Not found", f"There is no environment '{exc}'.",
                      "NOT_FOUND", next_link="/api/portal/environments", next_text="All environments")
    except ApprovalFailed as exc:
        return _error(req, _quiet_principal(req), 422, "Approval not possible", exc.reason, "APPROVAL_FAILED",
                      next_link="/api/portal/approvals", next_text="Back to approvals")
    except PhoneNumberError as exc:
        return _error(req, _quiet_principal(req), exc.status, "Phone numbers", exc.reason, exc.code,
                      next_link="/api/portal/phone-numbers", next_text="Back to phone numbers")
    except ReplayRefused as exc:
        return _error(req, _quiet_principal(req), exc.status, "Not replayed", exc.reason, exc.code,
                      next_link=_failures_url(req.route_params.get("environmentId", "")),
                      next_text="Back to the write-back failures")
    except EditConflict as exc:  # a button (disable, certificate...) whose change kept losing the race
        return _error(req, _quiet_principal(req), 409, "Changed by someone else",
                      EditConflict.MESSAGE if exc.stale else EditConflict.BUSY, "EDIT_CONFLICT",
                      next_link=back, next_text="Back to the environment")
    except EnvironmentExists as exc:
        return _error(req, _quiet_principal(req), 409, "Already exists",
                      f"An environment '{exc}' already exists; nothing was saved.", "ALREADY_EXISTS",
                      next_link=_environment_url(str(exc)), next_text="Open it")
    except (ConfigurationConflict, ConfigurationRefused) as exc:
        detail = str(exc) if isinstance(exc, ConfigurationConflict) else "; ".join(p.message for p in exc.problems)
        return _error(req, _quiet_principal(req), 422, "Not saved", detail, "INVALID", next_link=back,
                      next_text="Back to the environment")
    except UnusableSetting as exc:  # the stored document is not a configuration at all (lib/stored_settings.py)
        return _error(req, _quiet_principal(req), 409, "Stored environment unreadable",
                      f"The stored document of environment '{exc.environment_id}' cannot be read: {exc}. Correct or "
                      "remove the document in the store: the portal cannot edit it.", "ENVIRONMENT_UNREADABLE",
                      next_link="/api/portal/environments", next_text="All environments")
    except StoreUnavailable:
        busy = _error(req, _quiet_principal(req), 503, "Try again in a moment",
                      "The database is busy; nothing was lost. Try again in a moment.", "STORE_UNAVAILABLE")
        busy.headers["Retry-After"] = "30"
        return busy
    except Exception as exc:
        log.error("portal page failed type=%s correlation=%s", type(exc).__name__, correlation_id(req))
        return _error(req, _quiet_principal(req), 500, "Something went wrong",
                      "Nothing was changed. Give the reference below to your IT team.", "INTERNAL_ERROR")


def _environment_url(env_id: str) -> str:
    return f"/api/portal/environments/{urllib.parse.quote(env_id)}" if env_id else "/api/portal/environments"


def _quiet_principal(req: func.HttpRequest) -> Any:
    try:
        return principal_of(req)
    except Exception:
        return None


def _form(req: func.HttpRequest) -> dict[str, list[str]]:
    return form_body(req)


def _first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


def _change(req: func.HttpRequest, *roles: str) -> tuple[Any, dict[str, list[str]]]:
    """A form post: the form, and the user when they hold ``roles`` and the CSRF token is right."""
    form = _form(req)
    principal = authorize(req, *roles, change=True, form={k: v[0] for k, v in form.items() if v})
    return principal, form


def _problems(exc: Any) -> list[Any]:
    return list(exc.problems)


# ---- sign-in -------------------------------------------------------------------------------------------------
@bp.function_name("portal_home")
@bp.route(route="portal", methods=["GET"], auth_level=ANON)
@observed("portal_home")
def portal_home(req: func.HttpRequest) -> func.HttpResponse:
    """The portal's front door: each role goes to its first page."""
    def run() -> func.HttpResponse:
        principal = principal_of(req)
        if principal.has(ADMIN, APPROVER):
            return _redirect("/api/portal/approvals" if not principal.has(ADMIN) else "/api/portal/environments")
        return _error(req, principal, 200, "Nothing to configure for you",
                      "You have no Admin or Approver role. Reports are for the ReportsReader role; ask your "
                      "Microsoft 365 admin for the role you need.", None)
    return _guarded(req, run)


@bp.function_name("portal_signin")
@bp.route(route="portal/signin", methods=["GET", "POST"], auth_level=ANON)
@observed("portal_signin")
def portal_signin(req: func.HttpRequest) -> func.HttpResponse:
    """``GET``: how to sign in (Microsoft 365, or the local form). ``POST``: the local development sign-in
    (``PORTAL_DEV_SIGNIN``, local emulators only): ``name`` and ``roles`` -> a signed cookie."""
    from lib.config.access import DEV_COOKIE, DEV_SESSION_SECONDS, ROLES
    from lib.config.return_paths import PORTAL_PREFIX, safe_return_path

    access = services().portal.access
    if req.method == "GET":
        back = safe_return_path(req.params.get("next"))
        reason = ("Sign in with your Microsoft 365 account." if access.easy_auth_enabled else
                  "The portal needs App Service authentication with Microsoft Entra ID; it is not enabled for "
                  "this app (docs/portal.md \"Sign-in and roles\").")
        login = ("/.auth/login/aad?" + urllib.parse.urlencode({"post_login_redirect_uri": back or PORTAL_PREFIX})
                 if access.easy_auth_enabled else None)
        return _page(req, "portal/signin.html", None, title="Sign in", dev_signin=access.dev_signin, roles=ROLES,
                     reason=reason, login_url=login, next_path=back)

    def run() -> func.HttpResponse:
        if not access.dev_signin:
            return _error(req, None, 404, "Not found", "The local sign-in exists only when the app runs against "
                                                       "the local emulators.", "NOT_FOUND")
        form = form_body(req, max_bytes=4096)
        name = _first(form, "name").strip()
        roles = [r for r in form.get("roles", []) if r in ROLES]
        back = safe_return_path(_first(form, "next"))
        if not access.valid_dev_name(name):
            from lib.config.environments import Problem

            return _page(req, "portal/signin.html", None, 400, title="Sign in", dev_signin=True, roles=ROLES,
                         reason="", login_url=None, next_path=back,
                         problems=[Problem("name", "Enter a name: letters, digits and . _ @ + - only")])
        secure = "; Secure" if access.secure_cookies else ""
        cookie = (f"{DEV_COOKIE}={access.dev_cookie(name, roles)}; Max-Age={DEV_SESSION_SECONDS}; Path=/api; "
                  f"HttpOnly; SameSite=Lax{secure}")
        return _redirect(back or PORTAL_PREFIX, cookie)
    return _guarded(req, run)


@bp.function_name("portal_signout")
@bp.route(route="portal/signout", methods=["POST"], auth_level=ANON)
@observed("portal_signout")
def portal_signout(req: func.HttpRequest) -> func.HttpResponse:
    """Sign out: the local cookie is cleared; with App Service authentication, its logout endpoint."""
    from lib.config.access import DEV_COOKIE

    def run() -> func.HttpResponse:
        _change(req, ADMIN, APPROVER, REPORTS_READER)
        if services().portal.access.easy_auth_enabled:
            return _redirect("/.auth/logout?post_logout_redirect_uri=/api/portal/signin")
        return _redirect("/api/portal/signin", f"{DEV_COOKIE}=; Max-Age=0; Path=/api; HttpOnly; SameSite=Lax")
    return _guarded(req, run)


# ---- environments --------------------------------------------------------------------------------------------
def _environment_form(req: func.HttpRequest, principal: Any, *, creating: bool, values: dict[str, Any],
                      env_id: str | None = None, problems: list[Any] | None = None,
                      raw: dict[str, str] | None = None, status: int = 200,
                      version: str | None = None, revoked: list[Any] | None = None) -> func.HttpResponse:
    from lib.config.forms import form_fields
    from lib.config.labels import shown

    summary, errors = shown(problems or [], anchor="environment", creating=creating)
    sms_errors = [item.detail for item in summary if item.field == "sms"]
    fields = form_fields(values, creating=creating, errors=errors, raw=raw)
    title = "Add an environment" if creating else f"Edit {env_id}"
    action = "/api/portal/environments" if creating else f"/api/portal/environments/{env_id}"
    cancel = "/api/portal/environments" if creating else f"/api/portal/environments/{env_id}"
    conflict = any(p.field == "reload" for p in problems or [])
    return _page(req, "portal/environment_form.html", principal, status, title=title, fields=fields, action=action,
                 cancel=cancel, problems=summary, section="environments", version=version, sms_errors=sms_errors,
                 sms_url=None if creating else f"/api/portal/environments/{env_id}/sms",
                 reload_url=f"/api/portal/environments/{env_id}/edit" if conflict else None, revoked=revoked or [])


@bp.function_name("portal_environments")
@bp.route(route="portal/environments", methods=["GET", "POST"], auth_level=ANON)
@observed("portal_environments")
def portal_environments(req: func.HttpRequest) -> func.HttpResponse:
    """``GET``: every environment (Admin, Approver). ``POST``: create one from the form (Admin)."""
    def run() -> func.HttpResponse:
        from lib.config.views import environment_view

        portal = services().portal
        if req.method == "GET":
            principal = authorize(req, ADMIN, APPROVER)
            views = [environment_view(e) for e in portal.environments.list()]
            return _page(req, "portal/environments.html", principal, title="Environments", environments=views,
                         can_edit=principal.has(ADMIN), section="environments",
                         unusable=[v for v in views if v["unusableSettings"]],
                         unreadable=portal.environments.unreadable(),
                         notice="Saved." if req.params.get("saved") else None)
        principal, form = _change(req, ADMIN)
        return _save_environment(req, principal, form, env_id=None)
    return _guarded(req, run)


def _save_environment(req: func.HttpRequest, principal: Any, form: dict[str, list[str]],
                      env_id: str | None) -> func.HttpResponse:
    from lib.config.environments import (
        ApprovalWouldBeRevoked,
        ConfigurationRefused,
        EditConflict,
        EnvironmentExists,
        Problem,
    )
    from lib.config.forms import defaults, parse_form

    portal = services().portal
    creating = env_id is None
    values = defaults() if creating else portal.environments.get(env_id or "").to_doc()
    version = _first(form, "version") or None  # what the editor opened: a save over a newer one is refused
    body, raw, unreadable = parse_form(form, creating=creating)
    try:
        typed = portal.environments.checked_body(body, environment_id=env_id, found=unreadable)
        if creating:
            saved = portal.environments.create(typed, principal)
        else:  # a change that stops launches (approval revoked) is saved only once confirmed
            saved, _ = portal.environments.edit(env_id or "", typed, principal, version=version,
                                                confirm_revoke=_first(form, "confirm_revoke") == "yes")
    except ApprovalWouldBeRevoked as exc:
        return _environment_form(req, principal, creating=creating, values=values, env_id=env_id, raw=raw,
                                 version=version, revoked=exc.revoked)
    except ConfigurationRefused as exc:
        return _environment_form(req, principal, creating=creating, values=values, env_id=env_id,
                                 problems=_problems(exc), raw=raw, status=422, version=version)
    except EditConflict as exc:
        return _environment_form(req, principal, creating=creating, values=values, env_id=env_id,
                                 problems=[Problem("reload", EditConflict.MESSAGE if exc.stale else EditConflict.BUSY)],
                                 raw=raw, status=409, version=version)
    except EnvironmentExists as exc:  # also a double-clicked Save: the first click created it
        return _environment_form(req, principal, creating=creating, values=values, env_id=env_id,
                                 problems=[Problem("id", f"An environment '{exc}' already exists: open it from the "
                                                         "list of environments, or choose another ID.")],
                                 raw=raw, status=409, version=version)
    return _redirect(f"/api/portal/environments/{saved.id}?saved=1")


@bp.function_name("portal_environment_new")
@bp.route(route="portal/environments/new", methods=["GET"], auth_level=ANON)
@observed("portal_environment_new")
def portal_environment_new(req: func.HttpRequest) -> func.HttpResponse:
    """The form of a new environment (Admin)."""
    def run() -> func.HttpResponse:
        from lib.config.forms import defaults

        principal = authorize(req, ADMIN)
        return _environment_form(req, principal, creating=True, values=defaults())
    return _guarded(req, run)


@bp.function_name("portal_environment")
@bp.route(route="portal/environments/{environmentId}", methods=["GET", "POST"], auth_level=ANON)
@observed("portal_environment")
def portal_environment(req: func.HttpRequest) -> func.HttpResponse:
    """``GET``: one environment: URLs and their approval, settings, certificates, recent changes (Admin,
    Approver). ``POST``: save the edit form (Admin)."""
    def run() -> func.HttpResponse:
        from lib.config.views import audit_view, environment_view

        portal = services().portal
        env_id = req.route_params.get("environmentId", "")
        if req.method == "POST":
            principal, form = _change(req, ADMIN)
            return _save_environment(req, principal, form, env_id=env_id)
        principal = authorize(req, ADMIN, APPROVER)
        return _environment_page(req, principal, portal.environments.get(env_id),
                                 notice="Saved." if req.params.get("saved") else None,
                                 audit=[audit_view(e) for e in portal.audit.for_environment(env_id, limit=10)]
                                 if principal.has(ADMIN) else [], view=environment_view)
    return _guarded(req, run)


def _environment_page(req: func.HttpRequest, principal: Any, config: Any, *, status: int = 200,
                      notice: str | None = None, audit: list[Any] | None = None, view: Any = None,
                      certificate_error: str | None = None) -> func.HttpResponse:
    from lib.config.environments import Problem
    from lib.config.views import environment_view

    problems = [Problem("certificate", certificate_error)] if certificate_error else []
    return _page(req, "portal/environment.html", principal, status, title=config.display_name,
                 env=(view or environment_view)(config), can_edit=principal.has(ADMIN), audit=audit or [],
                 notice=notice, section="environments", certificate_error=certificate_error, problems=problems)


@bp.function_name("portal_environment_edit")
@bp.route(route="portal/environments/{environmentId}/edit", methods=["GET"], auth_level=ANON)
@observed("portal_environment_edit")
def portal_environment_edit(req: func.HttpRequest) -> func.HttpResponse:
    """The edit form of an environment (Admin)."""
    def run() -> func.HttpResponse:
        from lib.config.environments import OWN_ACTIONS, Problem, invalid_stored_fields

        principal = authorize(req, ADMIN)
        env_id = req.route_params.get("environmentId", "")
        config, version = services().portal.environments.get_versioned(env_id)
        stored = [Problem(name, message) for name, message in invalid_stored_fields(config.to_doc()).items()
                  if name not in OWN_ACTIONS]  # saved by an older version: shown at its field, to be corrected
        return _environment_form(req, principal, creating=False, values=config.to_doc(), env_id=env_id,
                                 version=version, problems=stored)
    return _guarded(req, run)


def _toggle(req: func.HttpRequest, disabled: bool) -> func.HttpResponse:
    def run() -> func.HttpResponse:
        principal, form = _change(req, ADMIN)
        env_id = req.route_params.get("environmentId", "")
        services().portal.environments.set_disabled(env_id, disabled, _first(form, "reason")[:500], principal)
        return _redirect(f"/api/portal/environments/{env_id}?saved=1")
    return _guarded(req, run)


@bp.function_name("portal_environment_disable")
@bp.route(route="portal/environments/{environmentId}/disable", methods=["POST"], auth_level=ANON)
@observed("portal_environment_disable")
def portal_environment_disable(req: func.HttpRequest) -> func.HttpResponse:
    """Disable an environment (Admin)."""
    return _toggle(req, True)


@bp.function_name("portal_environment_enable")
@bp.route(route="portal/environments/{environmentId}/enable", methods=["POST"], auth_level=ANON)
@observed("portal_environment_enable")
def portal_environment_enable(req: func.HttpRequest) -> func.HttpResponse:
    """Enable an environment again (Admin)."""
    return _toggle(req, False)


# ---- certificates --------------------------------------------------------------------------------------------
def _uploaded_file(req: func.HttpRequest) -> tuple[dict[str, str], bytes | None]:
    """The text fields and the ``certificate`` file of a ``multipart/form-data`` post.

    Raises:
        Denied: 415 not multipart, 413 too large.
    """
    kind = req.headers.get("content-type") or ""
    if not kind.lower().startswith("multipart/form-data"):
        raise Denied(415, "Unsupported media type", "Upload the file with the form on the environment's page.",
                     "NOT_MULTIPART")
    raw = req.get_body() or b""
    if len(raw) > CERTIFICATE_FORM_BYTES:
        raise Denied(413, "File too large", f"The upload has {len(raw):,} bytes; a certificate has a few kilobytes. "
                                            "Upload only the certificate (.cer).", "TOO_LARGE")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + kind.encode("latin-1") + b"\r\n\r\n" + raw)
    fields: dict[str, str] = {}
    data: bytes | None = None
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "certificate":
            data = payload
        elif isinstance(name, str):
            fields[name] = payload.decode("utf-8", "replace")
    return fields, data


@bp.function_name("portal_certificates")
@bp.route(route="portal/environments/{environmentId}/certificates", methods=["POST"], auth_level=ANON)
@observed("portal_certificates")
def portal_certificates(req: func.HttpRequest) -> func.HttpResponse:
    """Upload an HL7 certificate from the environment page's form (Admin)."""
    def run() -> func.HttpResponse:
        from lib.config.certificates import CertificateRefused

        fields, data = _uploaded_file(req)
        principal = authorize(req, ADMIN, change=True, form=fields)
        env_id = req.route_params.get("environmentId", "")
        portal = services().portal
        try:
            if not data:
                raise CertificateRefused("Choose the certificate file (.cer) to upload.")
            info = portal.certificates.add(env_id, data, principal)
        except CertificateRefused as exc:
            return _environment_page(req, principal, portal.environments.get(env_id), status=422,
                                     certificate_error=exc.reason)
        return _redirect(f"/api/portal/environments/{env_id}?" + urllib.parse.urlencode(
            {"saved": "1", "certificate": info.thumbprint_id}) + "#certificates")
    return _guarded(req, run)


@bp.function_name("portal_certificate_remove")
@bp.route(route="portal/environments/{environmentId}/certificates/{thumbprint}/remove", methods=["POST"],
          auth_level=ANON)
@observed("portal_certificate_remove")
def portal_certificate_remove(req: func.HttpRequest) -> func.HttpResponse:
    """Remove an HL7 certificate (Admin)."""
    def run() -> func.HttpResponse:
        from lib.config.certificates import CertificateRefused

        principal, _form_data = _change(req, ADMIN)
        env_id = req.route_params.get("environmentId", "")
        portal = services().portal
        try:
            portal.certificates.remove(env_id, req.route_params.get("thumbprint", ""), principal)
        except CertificateRefused as exc:
            return _environment_page(req, principal, portal.environments.get(env_id), status=422,
                                     certificate_error=exc.reason)
        return _redirect(f"/api/portal/environments/{env_id}?saved=1#certificates")
    return _guarded(req, run)


# ---- records and audit ---------------------------------------------------------------------------------------
@bp.function_name("portal_records")
@bp.route(route="portal/environments/{environmentId}/records", methods=["GET"], auth_level=ANON)
@observed("portal_records")
def portal_records(req: func.HttpRequest) -> func.HttpResponse:
    """The integration records, labelled test or production (Admin, Approver)."""
    def run() -> func.HttpResponse:
        from lib.config.records import records_for
        from lib.config.views import environment_view, record_view

        principal = authorize(req, ADMIN, APPROVER)
        portal = services().portal
        config = portal.environments.get(req.route_params.get("environmentId", ""))
        records = [record_view(r) for r in records_for(config, portal.public_base_url)]
        return _page(req, "portal/records.html", principal, title=f"Integration records: {config.id}",
                     env=environment_view(config), records=records, section="environments")
    return _guarded(req, run)


@bp.function_name("portal_audit")
@bp.route(route="portal/audit", methods=["GET"], auth_level=ANON)
@observed("portal_audit")
def portal_audit(req: func.HttpRequest) -> func.HttpResponse:
    """Every change, newest first, a page at a time with "Older" (Admin); ``?environmentId=`` one environment,
    ``from`` / ``to`` a date range (the filter form)."""
    def run() -> func.HttpResponse:
        from lib.config.audit import AuditQuery, AuditQueryRefused
        from lib.config.views import audit_view

        principal = authorize(req, ADMIN)
        params = {k: v for k, v in req.params.items() if k in ("environmentId", "from", "to", "limit", "before")}
        shown = {k: v for k, v in params.items() if k != "before"}
        try:
            query = AuditQuery.parse(params)
        except AuditQueryRefused as exc:
            return _page(req, "portal/audit.html", principal, 400, title="Audit trail", audit=[], section="audit",
                         older=None, newest=None,
                         filters=shown, problems=[_AuditProblem(p) for p in exc.problems])
        page = services().portal.audit.page(query)
        older = ("/api/portal/audit?" + urllib.parse.urlencode({**shown, "before": page.older})) if page.older else None
        newest = ("/api/portal/audit?" + urllib.parse.urlencode(shown)) if query.before else None
        return _page(req, "portal/audit.html", principal, title="Audit trail", section="audit", filters=shown,
                     audit=[audit_view(e) for e in page.entries], older=older, newest=newest)
    return _guarded(req, run)


class _AuditProblem:
    """A refused filter of the audit page, shaped like a form problem (its field's input ID and the message)."""

    def __init__(self, text: str) -> None:
        name = text.split(":")[0]
        self.field = {"from": "from", "to": "to"}.get(name, "environmentId" if name == "environmentId" else "from")
        self.message = text


# ---- approvals -----------------------------------------------------------------------------------------------
def _assignment(env: Any, url: str) -> dict[str, str]:
    from lib.config.approvals import url_status

    return {"environmentId": env.id, "kind": env.kind, "url": url, "status": url_status(env, url)}


@bp.function_name("portal_approvals")
@bp.route(route="portal/approvals", methods=["GET"], auth_level=ANON)
@observed("portal_approvals")
def portal_approvals(req: func.HttpRequest) -> func.HttpResponse:
    """The URLs the signed-in approver is named for (Approver)."""
    def run() -> func.HttpResponse:
        principal = authorize(req, APPROVER)
        items = [_assignment(env, url) for env, url in services().portal.approvals.assignments(principal)]
        notice = {"approved": "Approved. The integration records are ready.",
                  "sent_back": "Sent back to the admin with your comment."}.get(req.params.get("done") or "")
        return _page(req, "portal/approvals.html", principal, title="Approvals", assignments=items,
                     section="approvals", notice=notice, form_origins=_origins(i["url"] for i in items))
    return _guarded(req, run)


@bp.function_name("portal_approval_signin")
@bp.route(route="portal/approvals/signin", methods=["POST"], auth_level=ANON)
@observed("portal_approval_signin")
def portal_approval_signin(req: func.HttpRequest) -> func.HttpResponse:
    """Start the approver's Epic sign-in: the browser goes to Epic's authorize endpoint (Approver)."""
    def run() -> func.HttpResponse:
        principal, form = _change(req, APPROVER)
        url = services().portal.approvals.begin(_first(form, "environmentId"), _first(form, "url"), principal)
        return _redirect(url)
    return _guarded(req, run)


@bp.function_name("portal_approval_callback")
@bp.route(route="portal/approvals/callback", methods=["GET"], auth_level=ANON)
@observed("portal_approval_callback")
def portal_approval_callback(req: func.HttpRequest) -> func.HttpResponse:
    """The ``redirect_uri`` of the approver's Epic sign-in: finish it, then show the decision page."""
    def run() -> func.HttpResponse:
        principal = authorize(req, APPROVER)
        query = {k: v for k, v in req.params.items() if isinstance(v, str)}
        proof = services().portal.approvals.complete(query, principal)
        return _redirect("/api/portal/approvals/review?" + urllib.parse.urlencode(
            {"environmentId": proof["environmentId"], "url": proof["url"], "proof": proof["id"]}))
    return _guarded(req, run)


@bp.function_name("portal_approval_review")
@bp.route(route="portal/approvals/review", methods=["GET"], auth_level=ANON)
@observed("portal_approval_review")
def portal_approval_review(req: func.HttpRequest) -> func.HttpResponse:
    """After the Epic sign-in: approve or send back (Approver named for the URL)."""
    def run() -> func.HttpResponse:
        from lib.config.approvals import ApprovalFailed

        principal = authorize(req, APPROVER)
        portal = services().portal
        proof = portal.approvals.proof(req.params.get("proof") or "", principal)
        if proof is None:
            raise ApprovalFailed("This Epic sign-in has expired (30 minutes) or was used. Sign in again.")
        env = portal.environments.get(proof["environmentId"])
        return _page(req, "portal/approval_review.html", principal, title="Approve", proof=proof,
                     item=_assignment(env, proof["url"]), section="approvals")
    return _guarded(req, run)


def _origins(urls: Any) -> tuple[str, ...]:
    """The origins of FHIR base URLs (their Epic server's authorize endpoint is on the same origin)."""
    out = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https" and parts.netloc:
            out.append(f"https://{parts.netloc}")
    return tuple(dict.fromkeys(out))


def _decide(req: func.HttpRequest, decision: str) -> func.HttpResponse:
    def run() -> func.HttpResponse:
        principal, form = _change(req, APPROVER)
        approvals = services().portal.approvals
        env_id, url = _first(form, "environmentId"), _first(form, "url")
        if decision == "approve":
            approvals.approve(env_id, url, _first(form, "proof"), principal)
            return _redirect("/api/portal/approvals?done=approved")
        approvals.send_back(env_id, url, _first(form, "comment"), principal)
        return _redirect("/api/portal/approvals?done=sent_back")
    return _guarded(req, run)


@bp.function_name("portal_approval_approve")
@bp.route(route="portal/approvals/approve", methods=["POST"], auth_level=ANON)
@observed("portal_approval_approve")
def portal_approval_approve(req: func.HttpRequest) -> func.HttpResponse:
    """Approve after the Epic sign-in (Approver named for the URL)."""
    return _decide(req, "approve")


@bp.function_name("portal_approval_send_back")
@bp.route(route="portal/approvals/send-back", methods=["POST"], auth_level=ANON)
@observed("portal_approval_send_back")
def portal_approval_send_back(req: func.HttpRequest) -> func.HttpResponse:
    """Send a URL back with a comment (Approver named for the URL)."""
    return _decide(req, "send-back")


# ---- SMS -----------------------------------------------------------------------------------------------------
def _sms_page(req: func.HttpRequest, principal: Any, config: Any, *, status: int = 200,
              problems: list[Any] | None = None, notice: str | None = None,
              typed: dict[str, str] | None = None, version: str | None = None) -> func.HttpResponse:
    import dataclasses

    from lib.config.labels import shown as shown_problems
    from lib.config.phone_numbers import PhoneNumberError, is_toll_free
    from lib.config.sms import preview
    from lib.config.views import environment_view
    from lib.sms.configuration import region_of
    from lib.sms.templates import KINDS, TEMPLATES, help_contact, template_for

    portal = services().portal
    languages = sorted(set(TEMPLATES) | set(config.sms.templates))
    typed_contact = (typed or {}).get("help_contact")
    templates = {}
    for language in languages:
        rows = []
        for kind in KINDS:
            text = (typed or {}).get(f"tpl-{language}-{kind}") or template_for(
                kind, language, config.sms.templates, config.sms.default_language)
            rows.append({"kind": kind, "text": text, "anchor": f"tpl-{language}-{kind}", "preview": preview(
                config, kind=kind, language=language, template=text, public_base_url=portal.public_base_url,
                help_contact=typed_contact)})
        templates[language] = rows
    try:
        owned = [n for n in portal.phone_numbers.owned() if "outbound" in n["sms"]]
    except PhoneNumberError:
        owned = []
    summary, errors = shown_problems(problems or [], anchor="sms")
    sms = config.sms
    shown = {"reminder_offsets_minutes": ", ".join(str(m) for m in sms.reminder_offsets_minutes),
             "reachable_countries": ", ".join(sms.reachable_countries), "help_contact": sms.help_contact or "",
             "per_number_cap": str(sms.per_number_cap), "per_number_window_hours": str(sms.per_number_window_hours),
             "rate_per_minute": str(sms.rate_per_minute), "phone_grace_minutes": str(sms.phone_grace_minutes),
             "default_language": sms.default_language, "join_link_base_url": sms.join_link_base_url or ""}
    form = {name: (typed or {}).get(name, value) for name, value in shown.items()}
    return _page(req, "portal/sms.html", principal, status, title=f"Text messages: {config.id}",
                 env=environment_view(config), owned=owned, toll_free=is_toll_free(sms.sender),
                 own_region=region_of(sms.sender) if sms.sender else None,
                 default_help=help_contact(dataclasses.replace(sms, help_contact=None), portal.public_base_url),
                 languages=languages, templates=templates, kind_names=KIND_NAMES, errors=errors, form=form,
                 problems=summary, notice=notice, section="environments", version=version,
                 reload_url=f"/api/portal/environments/{config.id}/sms" if "reload" in errors else None)


@bp.function_name("portal_sms")
@bp.route(route="portal/environments/{environmentId}/sms", methods=["GET", "POST"], auth_level=ANON)
@observed("portal_sms")
def portal_sms(req: func.HttpRequest) -> func.HttpResponse:
    """``GET``: the SMS settings with a preview of every text (Admin). ``POST``: save them."""
    def run() -> func.HttpResponse:
        from lib.config.environments import ConfigurationRefused, EditConflict, Problem
        from lib.config.sms import apply_sms_change, sms_change_summary
        from lib.sms.templates import KINDS, TEMPLATES, template_for

        portal = services().portal
        env_id = req.route_params.get("environmentId", "")
        if req.method == "GET":
            principal = authorize(req, ADMIN)
            config, version = portal.environments.get_versioned(env_id)
            return _sms_page(req, principal, config, notice="Saved." if req.params.get("saved") else None,
                             version=version)
        principal, form = _change(req, ADMIN)
        config, stored_version = portal.environments.get_versioned(env_id)
        version = _first(form, "version") or None  # what the editor opened: a save over a newer one is refused
        typed = {k: v[0] for k, v in form.items() if v}
        if version is not None and version != stored_version:
            return _sms_page(req, principal, config, status=409, typed=typed, version=version,
                             problems=[Problem("reload", EditConflict.MESSAGE)])
        unreadable: list[Problem] = []  # reported with every other problem; those settings stay as stored

        def whole(name: str, message: str) -> int | None:
            try:
                return int(_first(form, name).strip())
            except ValueError:
                unreadable.append(Problem(f"sms.{name}", message))
                return None

        offsets_text = _first(form, "reminder_offsets_minutes")
        offsets: list[int] | None
        try:
            offsets = [int(p) for p in offsets_text.replace(";", ",").split(",") if p.strip()]
        except ValueError:
            offsets = None
            unreadable.append(Problem("sms.reminder_offsets_minutes",
                                      "write whole minutes separated by commas, e.g. 1440, 60"))
        cap = whole("per_number_cap", "write the number of texts as a whole number, e.g. 6 (0: no limit)")
        window = whole("per_number_window_hours", "write the period as a whole number of hours, e.g. 72 for 3 days")
        # A form without these (a page opened before they existed) keeps what is stored.
        rate = whole("rate_per_minute", "write the number of texts a minute as a whole number, e.g. 200") \
            if "rate_per_minute" in form else None
        grace = whole("phone_grace_minutes", "write the minutes as a whole number, e.g. 120") \
            if "phone_grace_minutes" in form else None
        overrides: dict[str, dict[str, str]] = {}
        for language in sorted(set(TEMPLATES) | set(config.sms.templates)):
            for kind in KINDS:
                text = _first(form, f"tpl-{language}-{kind}").replace("\r\n", "\n").strip()
                shipped = template_for(kind, language, {}, config.sms.default_language)
                if text and text != shipped:
                    overrides.setdefault(language, {})[kind] = text
        change = {
            "consentSendOnBehalf": _first(form, "consentSendOnBehalf") == "on",
            "consentPatientsAgreed": _first(form, "consentPatientsAgreed") == "on",
            "enabled": _first(form, "enabled") == "on",
            "confirm_booked": _first(form, "confirm_booked") == "on",
            "confirm_changed": _first(form, "confirm_changed") == "on",
            "confirm_cancelled": _first(form, "confirm_cancelled") == "on",
            "reminder_offsets_minutes": offsets,
            "quiet_hours": [_first(form, "quiet_start"), _first(form, "quiet_end")],
            "default_language": _first(form, "default_language").strip() or "en",
            "join_link_base_url": _first(form, "join_link_base_url").strip() or None,
            "templates": overrides,
            "reachable_countries": [c.upper() for c in re.split(r"[\s,;]+", _first(form, "reachable_countries"))
                                    if c],
            "help_contact": _first(form, "help_contact").strip() or None,
            "per_number_cap": cap,
            "per_number_window_hours": window,
            "rate_per_minute": rate,
            "phone_grace_minutes": grace,
        }
        change = {k: v for k, v in change.items() if v is not None or k in ("join_link_base_url", "help_contact")}
        if config.sms.consented_at and change["consentSendOnBehalf"] and change["consentPatientsAgreed"]:
            change.pop("consentSendOnBehalf")  # unchanged consents keep who gave them and when
            change.pop("consentPatientsAgreed")
        try:
            after, found = apply_sms_change(config, change, principal, now=services().clock.now())
            portal.environments.replace_checked(config, after, principal, action="sms.update", sms_save=True,
                                                version=stored_version, summary=sms_change_summary(config, after),
                                                found=unreadable + found)
        except ConfigurationRefused as exc:
            return _sms_page(req, principal, config, status=422, typed=typed, problems=_problems(exc),
                             version=version)
        except EditConflict:
            return _sms_page(req, principal, config, status=409, typed=typed, version=version,
                             problems=[Problem("reload", EditConflict.MESSAGE)])
        return _redirect(f"/api/portal/environments/{env_id}/sms?saved=1")
    return _guarded(req, run)


@bp.function_name("portal_sms_sender")
@bp.route(route="portal/environments/{environmentId}/sms/sender", methods=["POST"], auth_level=ANON)
@observed("portal_sms_sender")
def portal_sms_sender(req: func.HttpRequest) -> func.HttpResponse:
    """Link one of our numbers as the environment's sender (Admin)."""
    def run() -> func.HttpResponse:
        principal, form = _change(req, ADMIN)
        env_id = req.route_params.get("environmentId", "")
        services().portal.phone_numbers.link(env_id, _first(form, "number"), principal)
        return _redirect(f"/api/portal/environments/{env_id}/sms?saved=1")
    return _guarded(req, run)


# ---- phone numbers -------------------------------------------------------------------------------------------
@bp.function_name("portal_phone_numbers")
@bp.route(route="portal/phone-numbers", methods=["GET"], auth_level=ANON)
@observed("portal_phone_numbers")
def portal_phone_numbers(req: func.HttpRequest) -> func.HttpResponse:
    """Our numbers, a number offer (``?offer=<searchId>``) and the search form (Admin)."""
    def run() -> func.HttpResponse:
        from lib.clock import SystemClock
        from lib.config.phone_numbers import SEARCH_RECORD

        principal = authorize(req, ADMIN)
        portal = services().portal
        offer = None
        if req.params.get("offer"):
            found = portal.operations.get(req.params["offer"], SEARCH_RECORD, now=SystemClock().now())
            if found:
                offer = {"searchId": found["id"], "numbers": found["numbers"], "cost": found["cost"],
                         "expires": found["expires"]}
        owned = portal.phone_numbers.owned()
        return _page(req, "portal/phone_numbers.html", principal, title="Phone numbers", owned=owned, offer=offer,
                     errors={}, section="phone-numbers", senders=_configured_senders(portal, owned))
    return _guarded(req, run)


def _configured_senders(portal: Any, owned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each environment's configured SMS sender, and whether this Communication Services resource lists it
    (a number bought in another resource, or the demo's stand-in sender, is configured but not owned here)."""
    numbers = {n["number"] for n in owned}
    return [{"environment": e.id, "name": e.display_name, "number": e.sms.sender, "enabled": e.sms.enabled,
             "owned": e.sms.sender in numbers} for e in portal.environments.list() if e.sms.sender]


@bp.function_name("portal_phone_number_searches")
@bp.route(route="portal/phone-numbers/searches", methods=["POST"], auth_level=ANON)
@observed("portal_phone_number_searches")
def portal_phone_number_searches(req: func.HttpRequest) -> func.HttpResponse:
    """Search for a number (Admin), then show the offer."""
    def run() -> func.HttpResponse:
        from lib.config.environments import Problem
        from lib.config.phone_numbers import SearchBody

        principal, form = _change(req, ADMIN)
        number_type = _first(form, "numberType") or "tollFree"
        area_code = _first(form, "areaCode").strip()
        errors: dict[str, str] = {}
        if number_type not in ("tollFree", "geographic"):  # ACS mobile numbers are not offered for US texts
            errors["numberType"] = "Choose toll-free or local: other kinds of number (mobile) are not offered here."
        if area_code and not re.fullmatch(r"[2-9]\d\d", area_code):
            errors["areaCode"] = "An area code has three digits and does not start with 0 or 1, e.g. 206."
        if errors:
            portal = services().portal
            owned = portal.phone_numbers.owned()
            return _page(req, "portal/phone_numbers.html", principal, 422, title="Phone numbers", owned=owned,
                         offer=None, errors=errors, problems=[Problem(f, m) for f, m in errors.items()],
                         section="phone-numbers", senders=_configured_senders(portal, owned),
                         values={"numberType": number_type, "areaCode": area_code})
        body = {"numberType": number_type, **({"areaCode": area_code} if area_code else {})}
        typed = SearchBody.model_validate(body).model_dump(exclude_unset=True)
        found = services().portal.phone_numbers.search(typed, principal)
        return _redirect("/api/portal/phone-numbers?" + urllib.parse.urlencode({"offer": found.search_id}))
    return _guarded(req, run)


@bp.function_name("portal_phone_number_purchases")
@bp.route(route="portal/phone-numbers/purchases", methods=["POST"], auth_level=ANON)
@observed("portal_phone_number_purchases")
def portal_phone_number_purchases(req: func.HttpRequest) -> func.HttpResponse:
    """Buy the offered number (Admin; the cost consent is required); then the progress page."""
    def run() -> func.HttpResponse:
        from lib.clock import SystemClock
        from lib.config.environments import Problem
        from lib.config.phone_numbers import SEARCH_RECORD, PhoneNumberError

        principal, form = _change(req, ADMIN)
        portal = services().portal
        search_id = _first(form, "searchId")
        try:
            record_id = portal.phone_numbers.purchase(
                {"searchId": search_id, "consentToCosts": _first(form, "consentToCosts") == "on"}, principal)
        except PhoneNumberError as exc:
            found = portal.operations.get(search_id, SEARCH_RECORD, now=SystemClock().now())
            if exc.code != "CONSENT_MISSING" or found is None:
                raise
            offer = {"searchId": found["id"], "numbers": found["numbers"], "cost": found["cost"],
                     "expires": found["expires"]}
            owned = portal.phone_numbers.owned()
            return _page(req, "portal/phone_numbers.html", principal, 422, title="Phone numbers",
                         owned=owned, offer=offer, section="phone-numbers", senders=_configured_senders(portal, owned),
                         errors={"consentToCosts": exc.reason}, problems=[Problem("consentToCosts", exc.reason)])
        return _redirect(f"/api/portal/phone-numbers/purchases/{record_id}")
    return _guarded(req, run)


@bp.function_name("portal_phone_number_purchase")
@bp.route(route="portal/phone-numbers/purchases/{purchaseId}", methods=["GET"], auth_level=ANON)
@observed("portal_phone_number_purchase")
def portal_phone_number_purchase(req: func.HttpRequest) -> func.HttpResponse:
    """A purchase's progress (Admin); reload it, or let the page's script poll."""
    def run() -> func.HttpResponse:
        principal = authorize(req, ADMIN)
        progress = services().portal.phone_numbers.progress(req.route_params.get("purchaseId", ""))
        return _page(req, "portal/purchase.html", principal, title="Buying a number", purchase=progress,
                     section="phone-numbers")
    return _guarded(req, run)



# ---- write-back failures -------------------------------------------------------------------------------------
def _failures_url(env_id: str) -> str:
    return f"/api/portal/environments/{urllib.parse.quote(env_id, safe='')}/writeback-failures"


@bp.function_name("portal_writeback_overview")
@bp.route(route="portal/writeback-failures", methods=["GET"], auth_level=ANON)
@observed("portal_writeback_overview")
def portal_writeback_overview(req: func.HttpRequest) -> func.HttpResponse:
    """Every environment with its number of write-back failures (Admin)."""
    def run() -> func.HttpResponse:
        from lib.config.views import environment_view

        principal = authorize(req, ADMIN)
        portal = services().portal
        counts = portal.writeback_failures.counts()
        rows = [{"env": environment_view(e), "count": counts.get(e.id, 0)} for e in portal.environments.list()]
        return _page(req, "portal/writeback_overview.html", principal, title="Write-back failures", rows=rows,
                     total=sum(r["count"] for r in rows), section="writeback")
    return _guarded(req, run)


@bp.function_name("portal_writeback_failures")
@bp.route(route="portal/environments/{environmentId}/writeback-failures", methods=["GET"], auth_level=ANON)
@observed("portal_writeback_failures")
def portal_writeback_failures(req: func.HttpRequest) -> func.HttpResponse:
    """One environment's failed write-backs with Epic's reasons and the settings check (Admin);
    ``?replay=<audit id>`` shows what a replay did."""
    def run() -> func.HttpResponse:
        principal = authorize(req, ADMIN)
        env_id = req.route_params.get("environmentId", "")
        result = None
        if req.params.get("replay"):
            result = services().portal.writeback_failures.result(env_id, req.params["replay"])
        return _failures_page(req, principal, env_id, result=result,
                              nothing=req.params.get("replay") == "none")
    return _guarded(req, run)


def _failures_page(req: func.HttpRequest, principal: Any, env_id: str, *, status: int = 200, result: Any = None,
                   nothing: bool = False, problems: list[Any] | None = None,
                   checked: str | None = None) -> func.HttpResponse:
    from lib.config.views import environment_view
    from lib.config.writeback_failures import OUTCOMES

    report = services().portal.writeback_failures.report(env_id)
    config = report.environment
    return _page(req, "portal/writeback_failures.html", principal, status, title=f"Write-back failures: {env_id}",
                 env=environment_view(config), report=report, result=result, outcomes=OUTCOMES, nothing=nothing,
                 problems=problems or [], checked=checked, section="writeback",
                 horizon=config.writeback_retry_horizon_minutes)


@bp.function_name("portal_writeback_replay")
@bp.route(route="portal/environments/{environmentId}/writeback-failures/replay", methods=["POST"],
          auth_level=ANON)
@observed("portal_writeback_replay")
def portal_writeback_replay(req: func.HttpRequest) -> func.HttpResponse:
    """Replay one event (``event_id``, ``appointment_key``, ``checked_in_epic``) or all (``all``) (Admin), then
    back to the list with the outcome (post, redirect, get)."""
    def run() -> func.HttpResponse:
        from lib.config.environments import Problem
        from lib.config.writeback_failures import ReplayRefused

        principal, form = _change(req, ADMIN)
        env_id = req.route_params.get("environmentId", "")
        failures = services().portal.writeback_failures
        if _first(form, "all") == "1":
            result = failures.replay_all(env_id, principal)
        else:
            event_id = _first(form, "event_id")
            try:
                result = failures.replay_one(env_id, event_id, _first(form, "appointment_key"), principal,
                                             checked_in_epic=_first(form, "checked_in_epic") == "on")
            except ReplayRefused as exc:
                if exc.code != "CHECK_EPIC_FIRST":
                    raise
                return _failures_page(req, principal, env_id, status=409, checked=event_id,
                                      problems=[Problem(f"checked-{event_id}", exc.reason)])
        return _redirect(_failures_url(env_id) + "?" + urllib.parse.urlencode(
            {"replay": result.audit_id if result.outcomes else "none"}))
    return _guarded(req, run)
