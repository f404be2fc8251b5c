"""The Functions host would index exactly these functions, routes and triggers (engineering.md §3.2)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_HTTP = {
    "hl7_intake": ("hl7/{environmentId}", ["POST"]),
    "launch_provider": ("launch/provider", ["GET"]),
    "launch_patient": ("launch/patient", ["GET"]),
    "launch_callback": ("launch/callback", ["GET"]),
    "jwks": (".well-known/jwks.json", ["GET"]),
    "jwks_test": (".well-known/jwks/test.json", ["GET"]),
    "jwks_production": (".well-known/jwks/production.json", ["GET"]),
    "launch_signin": ("launch/signin", ["GET"]),
    "join_page": ("join/{token?}", ["GET"]),
    "join_events": ("join/{token}/events", ["POST"]),
    "join_call": ("join/{token}/call", ["POST"]),
    "device_test_page": ("devicetest", ["GET"]),
    "device_test_ping": ("devicetest/ping", ["GET"]),
    "device_test_payload": ("devicetest/payload", ["GET"]),
    "health_live": ("health/live", ["GET"]),
    "health_ready": ("health/ready", ["GET"]),
    "acs_events": ("events/acs", ["POST"]),
    # configuration portal: JSON API (functions/admin.py) and pages (functions/portal.py)
    "config_session": ("config/session", ["GET"]),
    "config_environments": ("config/environments", ["GET", "POST"]),
    "config_environment": ("config/environments/{environmentId}", ["GET", "PATCH"]),
    "config_environment_disable": ("config/environments/{environmentId}/disable", ["POST"]),
    "config_environment_enable": ("config/environments/{environmentId}/enable", ["POST"]),
    "config_certificates": ("config/environments/{environmentId}/certificates", ["POST"]),
    "config_certificate": ("config/environments/{environmentId}/certificates/{thumbprint}", ["DELETE"]),
    "config_records": ("config/environments/{environmentId}/records", ["GET"]),
    "config_audit": ("config/audit", ["GET"]),
    "config_writeback_failures": ("config/environments/{environmentId}/writeback-failures", ["GET"]),
    "config_writeback_replay": ("config/environments/{environmentId}/writeback-failures/replay", ["POST"]),
    "config_approvals": ("config/approvals", ["GET"]),
    "config_approval_signin": ("config/approvals/signin", ["POST"]),
    "config_approval_approve": ("config/approvals/approve", ["POST"]),
    "config_approval_send_back": ("config/approvals/send-back", ["POST"]),
    "config_openapi": ("config/openapi.json", ["GET"]),
    "config_sms": ("config/environments/{environmentId}/sms", ["PUT"]),
    "config_sms_sender": ("config/environments/{environmentId}/sms/sender", ["POST"]),
    "config_sms_preview": ("config/sms/preview", ["POST"]),
    "config_phone_numbers": ("config/phone-numbers", ["GET"]),
    "config_phone_number_searches": ("config/phone-numbers/searches", ["POST"]),
    "config_phone_number_purchases": ("config/phone-numbers/purchases", ["POST"]),
    "config_phone_number_purchase": ("config/phone-numbers/purchases/{purchaseId}", ["GET"]),
    "portal_home": ("portal", ["GET"]),
    "portal_signin": ("portal/signin", ["GET", "POST"]),
    "portal_signout": ("portal/signout", ["POST"]),
    "portal_environments": ("portal/environments", ["GET", "POST"]),
    "portal_environment_new": ("portal/environments/new", ["GET"]),
    "portal_environment": ("portal/environments/{environmentId}", ["GET", "POST"]),
    "portal_environment_edit": ("portal/environments/{environmentId}/edit", ["GET"]),
    "portal_environment_disable": ("portal/environments/{environmentId}/disable", ["POST"]),
    "portal_environment_enable": ("portal/environments/{environmentId}/enable", ["POST"]),
    "portal_certificates": ("portal/environments/{environmentId}/certificates", ["POST"]),
    "portal_certificate_remove": ("portal/environments/{environmentId}/certificates/{thumbprint}/remove", ["POST"]),
    "portal_records": ("portal/environments/{environmentId}/records", ["GET"]),
    "portal_audit": ("portal/audit", ["GET"]),
    "portal_writeback_overview": ("portal/writeback-failures", ["GET"]),
    "portal_writeback_failures": ("portal/environments/{environmentId}/writeback-failures", ["GET"]),
    "portal_writeback_replay": ("portal/environments/{environmentId}/writeback-failures/replay", ["POST"]),
    "portal_approvals": ("portal/approvals", ["GET"]),
    "portal_approval_signin": ("portal/approvals/signin", ["POST"]),
    "portal_approval_callback": ("portal/approvals/callback", ["GET"]),
    "portal_approval_review": ("portal/approvals/review", ["GET"]),
    "portal_approval_approve": ("portal/approvals/approve", ["POST"]),
    "portal_approval_send_back": ("portal/approvals/send-back", ["POST"]),
    "portal_sms": ("portal/environments/{environmentId}/sms", ["GET", "POST"]),
    "portal_sms_sender": ("portal/environments/{environmentId}/sms/sender", ["POST"]),
    "portal_phone_numbers": ("portal/phone-numbers", ["GET"]),
    "portal_phone_number_searches": ("portal/phone-numbers/searches", ["POST"]),
    "portal_phone_number_purchases": ("portal/phone-numbers/purchases", ["POST"]),
    "portal_phone_number_purchase": ("portal/phone-numbers/purchases/{purchaseId}", ["GET"]),
    "graph_notifications": ("notifications/graph", ["POST"]),
    "graph_lifecycle": ("notifications/graph/lifecycle", ["POST"]),
    "visit_status_page": ("visits/{token}/status", ["GET"]),
    "visit_status_json": ("visits/{token}/status.json", ["GET"]),
    "static_files": ("static/{*path}", ["GET", "HEAD"]),
    # reports (functions/reports.py)
    "report_page": ("portal/reports", ["GET"]),
    "report_visits": ("reports/visits", ["GET"]),
    "report_texts": ("reports/texts", ["GET"]),
    "report_visits_csv": ("reports/visits.csv", ["GET"]),
    "report_texts_csv": ("reports/texts.csv", ["GET"]),
}
EXPECTED_QUEUES = {"sms_outbox": "sms-outbox", "writeback": "visit-events", "writeback_poison": "visit-events-poison",
                   "call_records": "call-records", "report_update": "report-updates",
                   "launch_followup": "launch-followup"}
EXPECTED_TIMERS = {"reminders_due": "0 * * * * *", "writeback_sweep": "0 */5 * * * *",
                   "presence_subscriptions": "30 */5 * * * *", "meeting_times": "45 */5 * * * *"}
EXPECTED_WARMUP = {"warmup"}  # the host requires this name (functions-bindings-warmup)


@pytest.fixture(scope="module")
def functions():
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def bindings(fn) -> list[dict]:
    return json.loads(fn.get_function_json())["bindings"]


def trigger(fn) -> dict:
    return next(b for b in bindings(fn) if b["type"].endswith("Trigger"))


def test_exactly_the_expected_functions_are_registered(functions):
    assert set(functions) == set(EXPECTED_HTTP) | set(EXPECTED_QUEUES) | set(EXPECTED_TIMERS) | EXPECTED_WARMUP


@pytest.mark.parametrize(("name", "route_methods"), sorted(EXPECTED_HTTP.items()))
def test_http_routes_and_methods(functions, name, route_methods):
    route, methods = route_methods
    t = trigger(functions[name])
    assert t["type"] == "httpTrigger"
    assert t["route"] == route
    assert [m.upper() for m in t["methods"]] == methods
    assert t["authLevel"].upper() == "ANONYMOUS"


@pytest.mark.parametrize(("name", "queue"), sorted(EXPECTED_QUEUES.items()))
def test_queue_triggers_read_the_right_queue_through_azurewebjobsstorage(functions, name, queue):
    t = trigger(functions[name])
    assert (t["type"], t["queueName"], t["connection"]) == ("queueTrigger", queue, "AzureWebJobsStorage")


def test_reminder_timer_runs_every_minute_and_not_on_startup(functions):
    t = trigger(functions["reminders_due"])
    assert t["type"] == "timerTrigger"
    assert t["schedule"] == EXPECTED_TIMERS["reminders_due"]
    assert not t.get("runOnStartup", False)


def test_the_warmup_function_is_a_warmup_trigger(functions):
    assert trigger(functions["warmup"])["type"] == "warmupTrigger"


def test_every_binding_name_is_a_parameter_of_its_function(functions):
    for name, fn in functions.items():
        params = set(inspect.signature(fn.get_user_function()).parameters)
        names = {b["name"] for b in bindings(fn) if b["name"] != "$return"}
        assert names == params, name


def test_every_function_wears_observed_under_its_own_name(functions):
    """``functions.observability.observed`` is what turns an escaped store failure into a 503 problem instead of
    the host's bare 500, and what counts outcomes: a trigger without it would do neither."""
    unobserved = {name: getattr(fn.get_user_function(), "observed_as", None) for name, fn in functions.items()
                  if getattr(fn.get_user_function(), "observed_as", None) != name}
    assert unobserved == {}


def test_import_has_no_side_effects_with_an_empty_environment():
    result = subprocess.run(
        [sys.executable, "-c", "import function_app; print(len(function_app.app.get_functions()))"],
        cwd=ROOT, env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(EXPECTED_HTTP) + len(EXPECTED_QUEUES) + len(EXPECTED_TIMERS) + len(EXPECTED_WARMUP)


def test_import_loads_no_heavy_sdk():
    code = (
        "import sys, function_app; heavy = [m for m in ('azure.cosmos', 'azure.storage.queue', "
        "'azure.communication.sms', 'msal', 'requests', 'joserfc', 'phonenumbers', 'azure.identity') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_host_json_queue_settings_match_what_the_dev_runner_and_host_read():
    host = json.loads((ROOT / "host.json").read_text())
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"
    assert queues["maxDequeueCount"] == 5
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
