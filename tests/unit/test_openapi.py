"""The OpenAPI document of the configuration API lists exactly the routes functions/admin.py registers."""

from __future__ import annotations

import json

from lib.config.openapi import OPERATIONS, document


def registered() -> set[tuple[str, str]]:
    """The config routes of a private copy of function_app (an app object is indexed only once)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("function_app_openapi_test",
                                                  Path(__file__).resolve().parents[2] / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    routes = set()
    for fn in module.app.get_functions():
        if not fn.get_function_name().startswith("config_"):
            continue
        trigger = next(b for b in json.loads(fn.get_function_json())["bindings"] if b["type"] == "httpTrigger")
        for method in trigger["methods"]:
            routes.add((method.lower(), "/api/" + trigger["route"]))
    return routes


def test_the_document_and_the_routes_agree_both_ways():
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert documented == registered()


def test_every_change_names_its_csrf_header_and_every_body_has_a_schema():
    doc = document("https://vv.example")
    for op in OPERATIONS:
        entry = doc["paths"][op.path][op.method]
        headers = [p["name"] for p in entry["parameters"] if p["in"] == "header"]
        assert ("X-CSRF-Token" in headers) == op.change, op.path
        if op.body:
            ref = entry["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"]


def test_the_environment_body_schema_forbids_unknown_fields_and_names_model_fields():
    schema = document("https://vv.example")["components"]["schemas"]["EnvironmentChange"]
    assert schema["additionalProperties"] is False
    assert {"fhir_base_urls", "csn_identifier_systems", "approvers", "epic_client_id"} <= set(schema["properties"])
    assert "approvals" not in schema["properties"] and "hl7_certificates" not in schema["properties"]
