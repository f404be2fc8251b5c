"""The alerts in Bicep match what the code emits and what the README's runbook explains."""

from __future__ import annotations

from pathlib import Path

from lib.observability import metrics
from tests.infra.bicep_text import BicepFile, parse_array, parse_object, string_value

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

#: alert name -> (metric it reads, README runbook heading)
EXPECTED_LOG_ALERTS = {
    "poison-messages": (metrics.QUEUE_DEPTH, "Poison messages present"),
    "sms-failure-rate": (metrics.SMS_MESSAGES, "SMS failure rate"),
    "sms-undelivered": (metrics.SMS_DELIVERY, "SMS not delivered"),
    "malformed-queue-messages": (metrics.QUEUE_MALFORMED, "Malformed queue messages"),
    "clock-skew": (metrics.CLOCK_SKEW, "Clock skew"),
    "reminder-lag": (metrics.REMINDER_LAG, "Reminder lag"),
    "hl7-reject-rate": (metrics.HL7_MESSAGES, "HL7 AR/AE spike"),
    "hl7-control-id-reused": (metrics.HL7_CONTROL_ID_REUSED, "HL7 control ID reused"),
    "hl7-cancel-ignored": (metrics.HL7_STALE, "HL7 cancel ignored"),
    "launch-error-rate": (metrics.LAUNCHES, "Launch error spike"),
    "writeback-failures": (metrics.WRITEBACKS, "Write-back failures"),
    "certificate-expiry": (metrics.CERTIFICATE_DAYS_LEFT, "HL7 certificate expiring"),
}


def _alerts() -> BicepFile:
    return BicepFile.load(INFRA / "app" / "alerts.bicep")


def _log_alerts() -> dict[str, dict[str, str]]:
    return {
        string_value(parse_object(item)["name"]) or "": parse_object(item)
        for item in parse_array(_alerts().variables["logAlerts"])
    }


def test_main_wires_the_alerts_module_with_the_app_url_and_receivers():
    main = BicepFile.load(INFRA / "main.bicep")
    module = main.symbol("alerts")
    assert module is not None and module.target == "app/alerts.bicep"
    params = parse_object(module.get("params") or "{}")
    assert params["applicationInsightsName"] == "monitoring.outputs.applicationInsightsName"
    assert params["appBaseUrl"] == "appBaseUrl"
    assert params["alertEmail"] == "alertEmail" and params["alertWebhookUrl"] == "alertWebhookUrl"
    assert main.params["alertEmail"][1] == "''" and main.params["alertWebhookUrl"][1] == "''"


def test_every_alert_of_the_issue_exists_and_reads_the_metric_the_code_emits():
    alerts = _log_alerts()
    assert set(alerts) == set(EXPECTED_LOG_ALERTS)
    for name, (metric, _) in EXPECTED_LOG_ALERTS.items():
        query = alerts[name]["query"]
        assert f'name == "{metric}"' in query, name
        assert "measured" in query, f"{name}: the rule measures the column 'measured'"


def test_the_sms_failure_rate_counts_failed_delivery_reports_not_only_send_errors():
    query = _log_alerts()["sms-failure-rate"]["query"]
    assert f'name == "{metrics.SMS_DELIVERY}" and status in ("Failed", "missing")' in query


def test_log_alert_rules_loop_over_the_list_and_notify_the_action_group():
    rules = _alerts().resources("Microsoft.Insights/scheduledQueryRules")
    assert len(rules) == 1 and rules[0].loop == "for alert in logAlerts"
    rule = rules[0]
    assert rule.get("properties.scopes") is not None and "applicationInsights.id" in rule.get("properties.scopes")
    assert "actionGroup.id" in (rule.get("properties.actions") or "")
    criteria = parse_object(parse_array(rule.get("properties.criteria.allOf") or "[]")[0])
    assert criteria["metricMeasureColumn"] == "'measured'"
    assert criteria["operator"] == "'GreaterThan'"
    assert criteria["threshold"] == "alert.threshold"


def test_action_group_has_optional_email_and_webhook_receivers():
    group = _alerts().resources("Microsoft.Insights/actionGroups")[0]
    assert "alertEmail" in (group.get("properties.emailReceivers") or "")
    assert "alertWebhookUrl" in (group.get("properties.webhookReceivers") or "")


def test_availability_tests_probe_the_registered_health_routes():
    tests = BicepFile.load(INFRA / "app" / "healthtests.bicep")
    paths = {string_value(parse_object(p)["path"]) for p in parse_array(tests.variables["probes"])}
    assert paths == {"/api/health/ready", "/api/health/live"}
    source = (REPO / "functions" / "health.py").read_text(encoding="utf-8")
    for path in paths:
        assert f'route="{path.removeprefix("/api/")}"' in source
    readiness = _alerts().symbol("readinessAlert")
    assert readiness is not None
    assert readiness.get("properties.criteria.webTestId") == "healthTests.outputs.readinessTestId"


def test_every_alert_has_a_runbook_section_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## Runbook" in readme
    for _, heading in EXPECTED_LOG_ALERTS.values():
        assert f"### {heading}" in readme, heading
    assert "### Not ready" in readme
