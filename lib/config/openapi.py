"""The OpenAPI 3.1 document of the configuration portal's JSON API (``GET /api/config/openapi.json``).

:data:`OPERATIONS` is the list of routes; request bodies are the pydantic models' own JSON schemas.
``tests/unit/test_openapi.py`` checks it against the routes ``functions/admin.py`` registers, both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Operation:
    """One route: method, path (under the site root), summary, roles, request body model (import path)."""

    method: str
    path: str
    summary: str
    roles: tuple[str, ...]
    body: str | None = None
    change: bool = False
    raw_body: bool = False
    query: str | None = None


_A, _P = ("Admin",), ("Approver",)
_AP = ("Admin", "Approver")
_ENV = "/api/config/environments/{environmentId}"
OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/api/config/session", "Who is signed in, their roles and the CSRF token", ()),
    Operation("get", "/api/config/environments", "List environments", _AP),
    Operation("post", "/api/config/environments", "Create an environment", _A,
              "lib.config.environments:EnvironmentCreate", True),
    Operation("get", _ENV, "Read an environment", _AP),
    Operation("patch", _ENV, "Change an environment", _A, "lib.config.environments:EnvironmentChange", True),
    Operation("post", _ENV + "/disable", "Disable an environment (no launch accepted)", _A,
              "lib.config.environments:DisableBody", True),
    Operation("post", _ENV + "/enable", "Enable an environment", _A, "lib.config.environments:DisableBody", True),
    Operation("post", _ENV + "/certificates", "Upload an HL7 certificate (.cer, PEM or base64 DER)", _A, None,
              True, raw_body=True),
    Operation("delete", _ENV + "/certificates/{thumbprint}", "Remove an HL7 certificate", _A, None, True),
    Operation("get", _ENV + "/records", "Integration records to copy into Epic", _AP),
    Operation("put", _ENV + "/sms", "Change SMS settings and consents", _A, "lib.config.sms:SmsChange", True),
    Operation("post", _ENV + "/sms/sender", "Link an ACS number as the SMS sender", _A,
              "lib.config.phone_numbers:LinkBody", True),
    Operation("post", "/api/config/sms/preview", "Preview a text and its segments", _A, "lib.config.sms:PreviewBody"),
    Operation("get", "/api/config/audit", "Audit trail, newest first, a page at a time (next page: the Link header "
              "with rel=next)", _A, query="lib.config.audit:AuditQuery"),
    Operation("get", _ENV + "/writeback-failures", "Failed write-backs to Epic and write-back settings problems",
              _A),
    Operation("post", _ENV + "/writeback-failures/replay", "Replay one failed write-back, or all (audited)", _A,
              "lib.config.writeback_failures:ReplayBody", True),
    Operation("get", "/api/config/approvals", "FHIR base URLs assigned to the signed-in approver", _P),
    Operation("post", "/api/config/approvals/signin", "Start the approver's Epic sign-in (SMART standalone launch)",
              _P, "lib.config.views:ApprovalTarget", True),
    Operation("post", "/api/config/approvals/approve", "Approve a FHIR base URL after the Epic sign-in", _P,
              "lib.config.views:ApprovalDecision", True),
    Operation("post", "/api/config/approvals/send-back", "Send a FHIR base URL back with a comment", _P,
              "lib.config.views:ApprovalDecision", True),
    Operation("get", "/api/config/phone-numbers", "Numbers owned by the ACS resource", _A),
    Operation("post", "/api/config/phone-numbers/searches", "Search for a number to buy", _A,
              "lib.config.phone_numbers:SearchBody", True),
    Operation("post", "/api/config/phone-numbers/purchases", "Start buying a search's numbers (long-running)", _A,
              "lib.config.phone_numbers:PurchaseBody", True),
    Operation("get", "/api/config/phone-numbers/purchases/{purchaseId}", "Progress of a purchase", _A),
    Operation("get", "/api/config/openapi.json", "This document", ()),
)


def _model(path: str) -> Any:
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def document(public_base_url: str) -> dict[str, Any]:
    """The OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "description": ("Roles: " + ", ".join(op.roles) if op.roles else "Any signed-in user")
            + (". A change: send the CSRF token from /api/config/session as X-CSRF-Token." if op.change else "."),
            "responses": {
                "200": {"description": "OK"}, "401": {"description": "Not signed in, or a forged principal header"},
                "403": {"description": "Role missing, not the named approver, or CSRF token missing"},
                "409": {"description": "ALREADY_EXISTS (create), or BUSY_CONFLICT: other saves kept winning; retry"},
                "412": {"description": "EDIT_CONFLICT: If-Match names an older version; GET it again"},
                "422": {"description": "Refused with every reason at once (problem+json with errors[], each "
                                       "{field: the setting's path, label: as the portal shows it, message: a "
                                       "sentence})"}},
            "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                           for name in _path_parameters(op.path)],
        }
        if op.query:
            properties = _model(op.query).model_json_schema(by_alias=True)["properties"]
            entry["parameters"] += [{"name": name, "in": "query", "required": False, "schema": schema}
                                    for name, schema in properties.items()]
        if op.change:
            entry["parameters"].append({"name": "X-CSRF-Token", "in": "header", "required": True,
                                        "schema": {"type": "string"}})
        if op.body:
            model = _model(op.body)
            schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        if op.raw_body:
            entry["requestBody"] = {"required": True, "content": {
                "application/pkix-cert": {"schema": {"type": "string"}},
                "application/x-pem-file": {"schema": {"type": "string"}}}}
        paths.setdefault(op.path, {})[op.method] = entry
    for schema in list(schemas.values()):
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
    return {"openapi": "3.1.0",
            "info": {"title": "Open Virtual Visits configuration API", "version": "1",
                     "description": "The JSON API under the configuration portal (docs/portal.md). Sign-in: App "
                                    "Service authentication (Entra ID); roles Admin, Approver, ReportsReader."},
            "servers": [{"url": public_base_url}], "paths": paths, "components": {"schemas": schemas}}


def _path_parameters(path: str) -> list[str]:
    import re

    return re.findall(r"\{([A-Za-z]+)\}", path)
