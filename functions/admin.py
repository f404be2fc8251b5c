"""HTTP triggers of the configuration portal's JSON API (``/api/config/...``; the pages are in
``functions/portal.py``). Thin: check who is calling (:mod:`functions.portal_access`), parse the body with the
pydantic models of :mod:`lib.config`, call the service, map errors in :func:`_call`.

The routes are not under ``admin/``: the Functions host reserves routes and function names starting with
``admin`` for its own admin API. The OpenAPI document (``GET /api/config/openapi.json``) lists every route here;
``tests/unit/test_openapi.py`` checks the two agree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from functions.dependencies import services
from functions.http import correlation_id, problem, raised_at
from functions.observability import observed
from functions.portal_access import Denied, authorize, json_body, principal_of, problem_for

bp = func.Blueprint()
log = logging.getLogger(__name__)

ADMIN, APPROVER, REPORTS_READER = "Admin", "Approver", "ReportsReader"
ANON = func.AuthLevel.ANONYMOUS


def _json(body: Any, status: int = 200, req: func.HttpRequest | None = None, *,
          etag: str | None = None) -> func.HttpResponse:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if req is not None:
        headers["x-correlation-id"] = correlation_id(req)
    if etag is not None:
        headers["ETag"] = f'"{_opaque(etag)}"'  # RFC 9110 8.8.3: an entity-tag is a quoted string
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json",
                             headers=headers)


def _call(req: func.HttpRequest, action: Callable[[], func.HttpResponse], *,
          refused: str = "The change was refused; nothing was saved.") -> func.HttpResponse:
    """Run ``action`` and map every failure to a problem response (never a bare 500). ``refused`` is the
    detail of a 422 (a route that saves nothing says so differently)."""
    from lib.config.access import Forbidden
    from lib.config.approvals import ApprovalFailed
    from lib.config.audit import AuditQueryRefused
    from lib.config.certificates import CertificateRefused
    from lib.config.environments import ConfigurationRefused, EditConflict, EnvironmentExists, NotFound
    from lib.config.phone_numbers import PhoneNumberError
    from lib.config.writeback_failures import ReplayRefused
    from lib.store.environments import ConfigurationConflict
    from lib.store.errors import StoreUnavailable
    from lib.stored_settings import UnusableSetting

    correlation = correlation_id(req)
    try:
        return action()
    except Denied as exc:
        return problem_for(req, exc)
    except Forbidden as exc:
        return problem(403, "Not allowed", exc.reason, correlation=correlation, code="NOT_ASSIGNED")
    except ConfigurationRefused as exc:
        from lib.config.labels import label

        return problem(422, "Not valid", refused, correlation=correlation, code="INVALID",
                       errors=[{"field": p.field, "label": label(p.field), "message": p.message}
                               for p in exc.problems])
    except NotFound as exc:
        return problem(404, "Not found", f"No environment '{exc}'.", correlation=correlation, code="NOT_FOUND")
    except EditConflict as exc:
        if not exc.stale:  # sent without If-Match and re-applied, but it kept losing the race
            return problem(409, "Changed by someone else", EditConflict.BUSY, correlation=correlation,
                           code="BUSY_CONFLICT")
        return problem(412, "Changed by someone else", "This environment was changed by someone else since you "
                       "read it (If-Match no longer matches its ETag); nothing was saved. GET it again, then "
                       "reapply your change.", correlation=correlation, code="EDIT_CONFLICT")
    except EnvironmentExists as exc:
        return problem(409, "Already exists", f"An environment '{exc}' already exists; nothing was saved. Choose "
                       "another ID, or PATCH that environment to change it.", correlation=correlation,
                       code="ALREADY_EXISTS", errors=[{"field": "id", "message": f"an environment '{exc}' already "
                                                                                 "exists"}])
    except ConfigurationConflict as exc:
        return problem(422, "Not valid", refused, correlation=correlation, code="INVALID",
                       errors=[{"field": "fhir_base_urls", "message": str(exc)}])
    except CertificateRefused as exc:
        return problem(422, "Certificate refused", exc.reason, correlation=correlation, code="CERTIFICATE_REFUSED",
                       errors=[{"field": "certificate", "message": exc.reason}])
    except ApprovalFailed as exc:
        return problem(422, "Approval not possible", exc.reason, correlation=correlation, code="APPROVAL_FAILED")
    except PhoneNumberError as exc:
        return problem(exc.status, "Phone numbers", exc.reason, correlation=correlation, code=exc.code)
    except ReplayRefused as exc:
        return problem(exc.status, "Not replayed", exc.reason, correlation=correlation, code=exc.code)
    except AuditQueryRefused as exc:
        return problem(422, "Not valid", "A query parameter is not valid; nothing was read.", correlation=correlation,
                       code="INVALID_QUERY", errors=[{"field": p.split(":")[0], "message": p} for p in exc.problems])
    except UnusableSetting as exc:  # the stored document is not a configuration at all (lib/stored_settings.py)
        return problem(409, "Stored environment unreadable",
                       f"The stored document of environment '{exc.environment_id}' cannot be read: {exc}. Correct "
                       "or remove the document in the store (the portal cannot edit it).", correlation=correlation,
                       code="ENVIRONMENT_UNREADABLE")
    except StoreUnavailable:
        busy = problem(503, "Unavailable", "The database is busy; try again in a moment.", correlation=correlation,
                       code="STORE_UNAVAILABLE")
        busy.headers["Retry-After"] = "30"
        return busy
    except Exception as exc:  # a bug: logged with its type, answered as a problem
        log.error("config api failed type=%s at=%s correlation=%s", type(exc).__name__, raised_at(exc), correlation)
        return problem(500, "Internal error", "Something went wrong; the correlation ID helps your IT team.",
                       correlation=correlation, code="INTERNAL_ERROR")


def _model(model: Any, body: Any) -> dict[str, Any]:
    """Validate ``body`` with a pydantic model; only the fields sent."""
    from pydantic import ValidationError

    from lib.config.environments import ConfigurationRefused, pydantic_problems

    try:
        return model.model_validate(_object(body)).model_dump(exclude_unset=True)
    except ValidationError as exc:
        raise ConfigurationRefused(pydantic_problems(exc)) from None


# ---- session -------------------------------------------------------------------------------------------------
@bp.function_name("config_session")
@bp.route(route="config/session", methods=["GET"], auth_level=ANON)
@observed("config_session")
def config_session(req: func.HttpRequest) -> func.HttpResponse:
    """Who is signed in, their roles, and the CSRF token scripts send as ``X-CSRF-Token``."""
    def run() -> func.HttpResponse:
        from lib.config.views import session_view

        principal = principal_of(req)
        return _json(session_view(principal, services().portal.csrf.issue(principal)), req=req)
    return _call(req, run)


# ---- environments --------------------------------------------------------------------------------------------
@bp.function_name("config_environments")
@bp.route(route="config/environments", methods=["GET", "POST"], auth_level=ANON)
@observed("config_environments")
def config_environments(req: func.HttpRequest) -> func.HttpResponse:
    """``GET``: every environment (Admin, Approver). ``POST``: create one (Admin; body ``EnvironmentCreate``)."""
    def run() -> func.HttpResponse:
        from lib.config.views import environment_view

        portal = services().portal
        if req.method == "GET":
            authorize(req, ADMIN, APPROVER)
            return _json([environment_view(e, portal) for e in portal.environments.list()], req=req)
        principal = authorize(req, ADMIN, change=True)
        created = portal.environments.create(_object(json_body(req)), principal)
        return _json(environment_view(created, portal), 201, req)
    return _call(req, run)


@bp.function_name("config_environment")
@bp.route(route="config/environments/{environmentId}", methods=["GET", "PATCH"], auth_level=ANON)
@observed("config_environment")
def config_environment(req: func.HttpRequest) -> func.HttpResponse:
    """``GET``: one environment (Admin, Approver). ``PATCH``: change fields (Admin; body ``EnvironmentChange``)."""
    def run() -> func.HttpResponse:
        from lib.config.views import environment_view

        portal = services().portal
        env_id = req.route_params.get("environmentId", "")
        if req.method == "GET":
            authorize(req, ADMIN, APPROVER)
            config, version = portal.environments.get_versioned(env_id)
            return _json(environment_view(config, portal), req=req, etag=version)
        principal = authorize(req, ADMIN, change=True)
        body = portal.environments.checked_body(_object(json_body(req)), environment_id=env_id)
        _, stored = portal.environments.get_versioned(env_id)
        _, revoked = portal.environments.edit(env_id, body, principal, version=_expected_version(req, stored))
        changed, version = portal.environments.get_versioned(env_id)
        # A change of kind or client ID revokes the URL's approval: say so, and who must renew it.
        answer = {**environment_view(changed, portal),
                  "approvalsRevoked": [{"url": r.url, "approver": r.approver, "message": r.message} for r in revoked]}
        return _json(answer, req=req, etag=version)
    return _call(req, run)


def _opaque(version: str) -> str:
    """A stored version (the document's ``_etag``) without the quotes a store may keep in it."""
    return version.strip().strip('"')


def _expected_version(req: func.HttpRequest, stored: str) -> str | None:
    """The version a script edited, from ``If-Match`` (RFC 9110 13.1.1): ``None`` when absent or ``*``;
    ``stored`` when one listed entity-tag is it (quoted as sent by our GET, or unquoted as older clients
    send it); otherwise a value that never matches (412). A weak tag (``W/"..."``) never matches: If-Match
    compares strongly."""
    value = (req.headers.get("if-match") or "").strip()
    if not value or value == "*":
        return None
    tags = [tag.strip() for tag in value.split(",") if tag.strip()]
    strong = {_opaque(tag) for tag in tags if not tag.startswith("W/")}
    return stored if _opaque(stored) in strong else "W/no-match"


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Denied(400, "Bad request", "The body must be a JSON object.", "BAD_JSON")
    return body


def _set_state(req: func.HttpRequest, disabled: bool) -> func.HttpResponse:
    def run() -> func.HttpResponse:
        from lib.config.environments import DisableBody
        from lib.config.views import environment_view

        principal = authorize(req, ADMIN, change=True)
        body = _model(DisableBody, json_body(req))
        portal = services().portal
        changed = portal.environments.set_disabled(req.route_params.get("environmentId", ""), disabled,
                                                   body.get("reason", ""), principal)
        return _json(environment_view(changed, portal), req=req)
    return _call(req, run)


@bp.function_name("config_environment_disable")
@bp.route(route="config/environments/{environmentId}/disable", methods=["POST"], auth_level=ANON)
@observed("config_environment_disable")
def config_environment_disable(req: func.HttpRequest) -> func.HttpResponse:
    """Disable an environment: no launch is accepted, the configuration is kept (Admin; body ``DisableBody``)."""
    return _set_state(req, True)


@bp.function_name("config_environment_enable")
@bp.route(route="config/environments/{environmentId}/enable", methods=["POST"], auth_level=ANON)
@observed("config_environment_enable")
def config_environment_enable(req: func.HttpRequest) -> func.HttpResponse:
    """Enable a disabled environment again (Admin; body ``DisableBody``)."""
    return _set_state(req, False)


# ---- certificates --------------------------------------------------------------------------------------------
@bp.function_name("config_certificates")
@bp.route(route="config/environments/{environmentId}/certificates", methods=["POST"], auth_level=ANON)
@observed("config_certificates")
def config_certificates(req: func.HttpRequest) -> func.HttpResponse:
    """Upload an HL7 certificate (Admin): the .cer file's bytes as the body (PEM or base64 DER text)."""
    def run() -> func.HttpResponse:
        from lib.config.certificates import MAX_BYTES
        from lib.config.views import certificate_view

        principal = authorize(req, ADMIN, change=True)
        data = req.get_body() or b""
        if len(data) > MAX_BYTES:
            raise Denied(413, "File too large", f"The file has {len(data):,} bytes; a certificate has a few "
                                                f"kilobytes (at most {MAX_BYTES // 1024} KB).", "TOO_LARGE")
        info = services().portal.certificates.add(req.route_params.get("environmentId", ""), data, principal)
        return _json(certificate_view(info), 201, req)
    return _call(req, run)


@bp.function_name("config_certificate")
@bp.route(route="config/environments/{environmentId}/certificates/{thumbprint}", methods=["DELETE"], auth_level=ANON)
@observed("config_certificate")
def config_certificate(req: func.HttpRequest) -> func.HttpResponse:
    """Remove an HL7 certificate by its SHA-256 thumbprint (hex, Admin)."""
    def run() -> func.HttpResponse:
        from lib.config.views import certificate_view

        principal = authorize(req, ADMIN, change=True)
        removed = services().portal.certificates.remove(req.route_params.get("environmentId", ""),
                                                        req.route_params.get("thumbprint", ""), principal)
        return _json(certificate_view(removed), req=req)
    return _call(req, run)


# ---- records and audit ---------------------------------------------------------------------------------------
@bp.function_name("config_records")
@bp.route(route="config/environments/{environmentId}/records", methods=["GET"], auth_level=ANON)
@observed("config_records")
def config_records(req: func.HttpRequest) -> func.HttpResponse:
    """The integration records to copy into Epic (Admin, Approver); empty until a URL is approved."""
    def run() -> func.HttpResponse:
        from lib.config.records import records_for
        from lib.config.views import record_view

        authorize(req, ADMIN, APPROVER)
        portal = services().portal
        config = portal.environments.get(req.route_params.get("environmentId", ""))
        return _json({"environmentId": config.id, "kind": config.kind,
                      "records": [record_view(r) for r in records_for(config, portal.public_base_url)]}, req=req)
    return _call(req, run)


@bp.function_name("config_audit")
@bp.route(route="config/audit", methods=["GET"], auth_level=ANON)
@observed("config_audit")
def config_audit(req: func.HttpRequest) -> func.HttpResponse:
    """One page of changes, newest first (Admin): ``?environmentId=`` one environment, ``from`` / ``to`` a date
    range, ``limit`` (1-200, default 50); the next (older) page is the ``Link: <...>; rel="next"`` header."""
    def run() -> func.HttpResponse:
        import urllib.parse

        from lib.config.audit import AuditQuery
        from lib.config.views import audit_view

        authorize(req, ADMIN)
        params = dict(req.params)
        page = services().portal.audit.page(AuditQuery.parse(params))
        answer = _json([audit_view(e) for e in page.entries], req=req)
        if page.older:
            older = urllib.parse.urlencode({**params, "before": page.older})
            answer.headers["Link"] = f'</api/config/audit?{older}>; rel="next"'
        return answer
    return _call(req, run)


# ---- write-back failures -------------------------------------------------------------------------------------
@bp.function_name("config_writeback_failures")
@bp.route(route="config/environments/{environmentId}/writeback-failures", methods=["GET"], auth_level=ANON)
@observed("config_writeback_failures")
def config_writeback_failures(req: func.HttpRequest) -> func.HttpResponse:
    """The environment's failed write-backs with Epic's reasons, and its write-back settings problems (Admin)."""
    def run() -> func.HttpResponse:
        authorize(req, ADMIN)
        report = services().portal.writeback_failures.report(req.route_params.get("environmentId", ""))
        return _json(report.to_json(), req=req)
    return _call(req, run)


@bp.function_name("config_writeback_replay")
@bp.route(route="config/environments/{environmentId}/writeback-failures/replay", methods=["POST"],
          auth_level=ANON)
@observed("config_writeback_replay")
def config_writeback_replay(req: func.HttpRequest) -> func.HttpResponse:
    """Replay one failed write-back or all of the environment (Admin; body ``ReplayBody``); audited. Safe to
    repeat: an event already queued or written is not sent again."""
    def run() -> func.HttpResponse:
        from lib.config.writeback_failures import ReplayBody

        principal = authorize(req, ADMIN, change=True)
        body = _model(ReplayBody, json_body(req))
        env_id = req.route_params.get("environmentId", "")
        failures = services().portal.writeback_failures
        if body.get("all"):
            result = failures.replay_all(env_id, principal)
        else:
            result = failures.replay_one(env_id, body["eventId"], body["appointmentKey"], principal,
                                         checked_in_epic=bool(body.get("checkedInEpic")))
        return _json(result.to_json(), req=req)
    return _call(req, run)


# ---- approvals -----------------------------------------------------------------------------------------------
@bp.function_name("config_approvals")
@bp.route(route="config/approvals", methods=["GET"], auth_level=ANON)
@observed("config_approvals")
def config_approvals(req: func.HttpRequest) -> func.HttpResponse:
    """The FHIR base URLs the signed-in approver is named for, with their status (Approver)."""
    def run() -> func.HttpResponse:
        from lib.config.approvals import url_status

        principal = authorize(req, APPROVER)
        return _json([{"environmentId": env.id, "kind": env.kind, "url": url, "status": url_status(env, url)}
                      for env, url in services().portal.approvals.assignments(principal)], req=req)
    return _call(req, run)


@bp.function_name("config_approval_signin")
@bp.route(route="config/approvals/signin", methods=["POST"], auth_level=ANON)
@observed("config_approval_signin")
def config_approval_signin(req: func.HttpRequest) -> func.HttpResponse:
    """Start the approver's Epic sign-in (SMART standalone launch) against a URL: ``{"environmentId", "url"}``
    -> ``{"authorizeUrl"}`` to open in the browser (Approver named for the URL)."""
    def run() -> func.HttpResponse:
        from lib.config.views import ApprovalTarget

        principal = authorize(req, APPROVER, change=True)
        target = _model(ApprovalTarget, json_body(req))
        url = services().portal.approvals.begin(target["environmentId"], target["url"], principal)
        return _json({"authorizeUrl": url}, req=req)
    return _call(req, run)


def _decide(req: func.HttpRequest, decision: str) -> func.HttpResponse:
    def run() -> func.HttpResponse:
        from lib.config.views import ApprovalDecision, environment_view

        principal = authorize(req, APPROVER, change=True)
        body = _model(ApprovalDecision, json_body(req))
        portal = services().portal
        if decision == "approve":
            changed = portal.approvals.approve(body["environmentId"], body["url"], body.get("proof") or "", principal)
        else:
            changed = portal.approvals.send_back(body["environmentId"], body["url"], body.get("comment") or "",
                                                 principal)
        return _json(environment_view(changed, portal), req=req)
    return _call(req, run)


@bp.function_name("config_approval_approve")
@bp.route(route="config/approvals/approve", methods=["POST"], auth_level=ANON)
@observed("config_approval_approve")
def config_approval_approve(req: func.HttpRequest) -> func.HttpResponse:
    """Approve a URL after the Epic sign-in: ``{"environmentId", "url", "proof"}`` (Approver named for it)."""
    return _decide(req, "approve")


@bp.function_name("config_approval_send_back")
@bp.route(route="config/approvals/send-back", methods=["POST"], auth_level=ANON)
@observed("config_approval_send_back")
def config_approval_send_back(req: func.HttpRequest) -> func.HttpResponse:
    """Send a URL back to the admin: ``{"environmentId", "url", "comment"}`` (Approver named for it)."""
    return _decide(req, "send-back")


# ---- OpenAPI -------------------------------------------------------------------------------------------------
@bp.function_name("config_openapi")
@bp.route(route="config/openapi.json", methods=["GET"], auth_level=ANON)
@observed("config_openapi")
def config_openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3.1 document of this API (public: it holds no configuration)."""
    from lib.config.openapi import document

    return _json(document(services().portal.public_base_url), req=req)


# ---- SMS -----------------------------------------------------------------------------------------------------
@bp.function_name("config_sms")
@bp.route(route="config/environments/{environmentId}/sms", methods=["PUT"], auth_level=ANON)
@observed("config_sms")
def config_sms(req: func.HttpRequest) -> func.HttpResponse:
    """Change an environment's SMS settings and consents (Admin; body ``SmsChange``); every rule of
    ``lib/sms/configuration.py`` is checked before anything is stored."""
    def run() -> func.HttpResponse:
        from lib.config.sms import apply_sms_change, read_sms_change, sms_change_summary
        from lib.config.views import environment_view

        principal = authorize(req, ADMIN, change=True)
        portal = services().portal
        env_id = req.route_params.get("environmentId", "")
        _, stored = portal.environments.get_versioned(env_id)
        expected = _expected_version(req, stored)
        change, unreadable = read_sms_change(_object(json_body(req)))
        now = services().clock.now()

        def applied(current: Any) -> Any:  # re-applied on the newest version when sent without If-Match
            after, found = apply_sms_change(current, change, principal, now=now)
            portal.environments.check(current, after, sms_save=True, found=unreadable + found)
            return after

        portal.environments.modify(env_id, applied, principal, action="sms.update", version=expected,
                                   summary=sms_change_summary)
        stored, version = portal.environments.get_versioned(env_id)
        return _json(environment_view(stored, portal), req=req, etag=version)
    return _call(req, run)


@bp.function_name("config_sms_sender")
@bp.route(route="config/environments/{environmentId}/sms/sender", methods=["POST"], auth_level=ANON)
@observed("config_sms_sender")
def config_sms_sender(req: func.HttpRequest) -> func.HttpResponse:
    """Link one of our ACS numbers to the environment as its SMS sender (Admin; body ``{"number"}``)."""
    def run() -> func.HttpResponse:
        from lib.config.phone_numbers import LinkBody
        from lib.config.views import environment_view

        principal = authorize(req, ADMIN, change=True)
        portal = services().portal
        body = _model(LinkBody, json_body(req))
        changed = portal.phone_numbers.link(req.route_params.get("environmentId", ""), body["number"], principal)
        return _json(environment_view(changed, portal), req=req)
    return _call(req, run)


@bp.function_name("config_sms_preview")
@bp.route(route="config/sms/preview", methods=["POST"], auth_level=ANON)
@observed("config_sms_preview")
def config_sms_preview(req: func.HttpRequest) -> func.HttpResponse:
    """A text as the patient would get it, with its segment count (Admin; body ``PreviewBody``). Changes nothing,
    so no CSRF token is needed."""
    def run() -> func.HttpResponse:
        from lib.config.sms import PreviewBody, preview

        authorize(req, ADMIN)
        body = _model(PreviewBody, json_body(req))
        portal = services().portal
        config = portal.environments.get(body["environmentId"])
        return _json(preview(config, kind=body.get("kind", "booked"), language=body.get("language", "en"),
                             template=body.get("template"), public_base_url=portal.public_base_url,
                             help_contact=body.get("helpContact")), req=req)
    return _call(req, run, refused="No preview: the text cannot be shown as it is (see errors).")


# ---- phone numbers -------------------------------------------------------------------------------------------
@bp.function_name("config_phone_numbers")
@bp.route(route="config/phone-numbers", methods=["GET"], auth_level=ANON)
@observed("config_phone_numbers")
def config_phone_numbers(req: func.HttpRequest) -> func.HttpResponse:
    """The numbers our ACS resource owns (Admin)."""
    def run() -> func.HttpResponse:
        authorize(req, ADMIN)
        return _json(services().portal.phone_numbers.owned(), req=req)
    return _call(req, run)


@bp.function_name("config_phone_number_searches")
@bp.route(route="config/phone-numbers/searches", methods=["POST"], auth_level=ANON)
@observed("config_phone_number_searches")
def config_phone_number_searches(req: func.HttpRequest) -> func.HttpResponse:
    """Search for a number to buy (Admin; body ``SearchBody``) -> the offer (``searchId``, numbers, cost)."""
    def run() -> func.HttpResponse:
        from lib.config.phone_numbers import SearchBody

        principal = authorize(req, ADMIN, change=True)
        found = services().portal.phone_numbers.search(_model(SearchBody, json_body(req)), principal)
        return _json({"searchId": found.search_id, "numbers": list(found.numbers), "cost": found.cost,
                      "expires": found.expires, "numberType": found.number_type}, 201, req)
    return _call(req, run)


@bp.function_name("config_phone_number_purchases")
@bp.route(route="config/phone-numbers/purchases", methods=["POST"], auth_level=ANON)
@observed("config_phone_number_purchases")
def config_phone_number_purchases(req: func.HttpRequest) -> func.HttpResponse:
    """Start buying a search's numbers (Admin; body ``PurchaseBody``) -> 202 ``{"id"}``, then poll
    ``GET /api/config/phone-numbers/purchases/{id}``."""
    def run() -> func.HttpResponse:
        from lib.config.phone_numbers import PurchaseBody

        principal = authorize(req, ADMIN, change=True)
        record_id = services().portal.phone_numbers.purchase(_model(PurchaseBody, json_body(req)), principal)
        return _json({"id": record_id, "status": "running"}, 202, req)
    return _call(req, run)


@bp.function_name("config_phone_number_purchase")
@bp.route(route="config/phone-numbers/purchases/{purchaseId}", methods=["GET"], auth_level=ANON)
@observed("config_phone_number_purchase")
def config_phone_number_purchase(req: func.HttpRequest) -> func.HttpResponse:
    """A purchase's progress: ``running``, ``succeeded`` or ``failed`` with the reason (Admin)."""
    def run() -> func.HttpResponse:
        authorize(req, ADMIN)
        return _json(services().portal.phone_numbers.progress(req.route_params.get("purchaseId", "")), req=req)
    return _call(req, run)
