"""Correlation IDs travel from the trigger to logs, queue messages and outbound calls; metrics tally."""

from __future__ import annotations

import io
import json
import logging

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

from functions.observability import observed
from lib.observability import correlation, logging_setup, metrics


def test_scope_sets_and_restores_the_id_and_replaces_a_malformed_one():
    assert correlation.current() is None
    with correlation.scope("abc-123") as cid:
        assert cid == correlation.current() == "abc-123"
        with correlation.scope("bad id with spaces") as inner:
            assert inner != "bad id with spaces" and len(inner) == 32
        assert correlation.current() == "abc-123"
    assert correlation.current() is None


def test_messages_and_headers_get_the_current_id_unless_they_have_one():
    with correlation.scope("c1"):
        assert correlation.with_correlation({"id": "x"}) == {"id": "x", "correlationId": "c1"}
        assert correlation.with_correlation({"id": "x", "correlationId": "c0"})["correlationId"] == "c0"
        assert correlation.outbound_headers({"Accept": "a"}) == {"Accept": "a", "x-correlation-id": "c1"}
        assert correlation.outbound_headers({"X-Correlation-Id": "c0"}) == {"X-Correlation-Id": "c0"}
    assert correlation.outbound_headers() == {}


def test_records_carry_the_correlation_id_and_json_lines_are_redacted():
    logging_setup.configure()  # installs the record factory (idempotent)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging_setup.JsonFormatter())
    logger = logging.getLogger("test.observability.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with correlation.scope("corr-42"):
            logger.info("texting %s", "+12015550123")
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "texting [phone]"
    assert line["correlation_id"] == "corr-42"
    assert line["level"] == "INFO" and line["logger"] == "test.observability.json"


def test_observed_http_trigger_uses_the_callers_correlation_id_and_counts_hl7_acks():
    metrics.reset()
    seen = {}

    @observed("hl7_intake")
    def trigger(req: func.HttpRequest) -> func.HttpResponse:
        seen["cid"] = correlation.current()
        ack = b"MSH|^~\\&|A|B|C|D|20260101120000+0000||ACK^S15^ACK|X1|P|2.3\rMSA|AR|C1|bad\r"
        return func.HttpResponse(ack, status_code=200)

    req = func.HttpRequest("POST", "/api/hl7/e", headers={"x-correlation-id": "given-1"}, body=b"", route_params={})
    trigger(req)
    assert seen["cid"] == "given-1"
    assert metrics.total(metrics.HL7_MESSAGES, trigger_event="S15", ack_code="AR") == 1


def test_observed_queue_trigger_takes_the_messages_correlation_id_and_counts_failures():
    metrics.reset()
    seen = {}

    @observed("writeback")
    def trigger(msg: func.QueueMessage) -> None:
        seen["cid"] = correlation.current()
        raise RuntimeError("EHR down")

    message = QueueMessage(id="m1", body=json.dumps({"id": "e", "appointmentKey": "k", "correlationId": "q-9"}))
    try:
        trigger(message)
    except RuntimeError:
        pass
    assert seen["cid"] == "q-9"
    assert metrics.total(metrics.WRITEBACKS, outcome="error") == 1


def test_launch_error_pages_are_counted_with_their_error_code():
    metrics.reset()

    @observed("launch_provider")
    def trigger(req: func.HttpRequest) -> func.HttpResponse:
        page = '<p>Error code: <code id="error-code">ISS_NOT_ALLOWED</code></p>'
        return func.HttpResponse(page, status_code=400)

    trigger(func.HttpRequest("GET", "/api/launch/provider", body=b"", route_params={}))
    assert metrics.total(metrics.LAUNCHES, kind="provider", outcome="error", error_code="ISS_NOT_ALLOWED") == 1


def test_metric_dimensions_never_carry_free_text():
    metrics.reset()
    metrics.sms_message("reminder", "sent to +1 201 555 0123")
    assert metrics.total(metrics.SMS_MESSAGES, outcome="other") == 1


def test_hl7_outcome_of_a_problem_document_is_its_http_status():
    assert metrics.hl7_outcome_from_ack(b'{"title": "x"}', 401) == (None, "http_401")


def test_function_app_import_loads_no_telemetry_package():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, function_app; print(','.join(m for m in ('opentelemetry', 'azure.monitor', "
        "'azure.monitor.opentelemetry') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_telemetry_off_by_default_and_settings_never_raise():
    from lib.settings import load_telemetry_settings

    assert load_telemetry_settings({}).enabled is False
    on = load_telemetry_settings({"TELEMETRY_ENABLED": "true", "APPLICATIONINSIGHTS_CONNECTION_STRING": "x=y"})
    assert on.enabled and on.connection_string == "x=y"


def test_the_sms_client_sends_the_correlation_id_header():
    from lib.sms.sender import AcsSmsSender

    sender = AcsSmsSender(connection_string="endpoint=https://127.0.0.1:1/;accesskey=QUJD", verify=False)
    pipeline = sender._client._sms_service_client._client._pipeline
    seen = {}

    def transport_send(request, **kwargs):
        seen.update(request.headers)
        raise TimeoutError

    pipeline._transport.send = transport_send
    with correlation.scope("corr-sms-1"):
        assert sender.send(sender="+18005550100", to="+12015550123", message="x").status == "unknown"
    assert seen["x-correlation-id"] == "corr-sms-1"


def test_outbound_http_client_sends_the_correlation_id_header():
    import requests
    from requests.adapters import BaseAdapter

    from lib.smart.transport import HttpClient

    seen = {}

    class Adapter(BaseAdapter):
        def send(self, request, **kwargs):
            seen.update(request.headers)
            response = requests.Response()
            response.status_code = 204
            return response

    client = HttpClient()
    client.session.mount("https://", Adapter())
    with correlation.scope("corr-http-1"):
        client.get("https://ehr.example/fhir/metadata")
    assert seen["x-correlation-id"] == "corr-http-1"


def test_observed_http_trigger_answers_503_for_a_store_failure_it_did_not_map_and_queue_triggers_raise():
    from lib.store.errors import StoreUnavailable

    @observed("portal_page")
    def page(req: func.HttpRequest) -> func.HttpResponse:
        raise StoreUnavailable("Cosmos DB unreachable: ServiceRequestError")

    @observed("writeback")
    def queue(msg: QueueMessage) -> None:
        raise StoreUnavailable("Cosmos DB unreachable: ServiceRequestError")

    req = func.HttpRequest("GET", "http://localhost/api/portal", headers={"x-correlation-id": "c-503"}, body=b"")
    answer = page(req)
    assert (answer.status_code, answer.headers["Retry-After"], answer.headers["x-correlation-id"]) == (503, "30",
                                                                                                     "c-503")
    assert json.loads(answer.get_body())["code"] == "STORE_UNAVAILABLE"
    with pytest.raises(StoreUnavailable):  # a queue trigger raises: the host delivers the message again
        queue(QueueMessage(body=b"{}"))
