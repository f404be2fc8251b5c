"""Benchmark: what the logging and telemetry setup costs per log call and per request.

Measured in this process, in microseconds (median of repeated batches):
- ``log_call_us``: one ``logger.info("... %s ...", arg)`` written as a line to an in-memory stream:
  ``plain`` (stdlib only), ``redacted`` (our record factory: correlation ID + redaction, JSON line), and
  ``redacted_otel`` (the same plus an OpenTelemetry ``LoggingHandler`` exporting to a no-op exporter);
- ``request_us``: one call of a trivial HTTP trigger: ``bare`` (no decorator), ``observed`` (the
  ``functions.observability.observed`` decorator with telemetry off: correlation scope, metrics tally) and
  ``observed_otel`` (metrics also recorded on OpenTelemetry instruments read by an in-memory reader);
- ``redact_us``: :func:`lib.observability.redaction.redact` on a typical log line and on a 2 KB text
  holding an HL7 message.

Azure Monitor itself is not contacted (no network here): the no-op/in-memory exporters stand in for it.
"""

from __future__ import annotations

import io
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any


def _per_call_us(fn: Callable[[], Any], *, calls: int = 2000, batches: int = 7) -> float:
    samples = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return round(statistics.median(samples), 2)


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def run() -> dict[str, Any]:
    """Run every measurement; returns ``{"log_call_us": {...}, "request_us": {...}, "redact_us": {...}}``."""
    import azure.functions as func
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import LogExporter, LogExportResult, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from functions.observability import observed
    from lib.observability import logging_setup, metrics
    from lib.observability.redaction import redact

    original_factory = logging.getLogRecordFactory()
    results: dict[str, Any] = {}
    message = "hl7 accepted env=%s msh10=%s event=%s outcome=%s texts=%d"
    args = ("demo", "7001234-1", "S12", "created", 2)

    plain_handler = logging.StreamHandler(io.StringIO())
    plain_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    plain = _logger("bench.plain", plain_handler)
    log_calls = {"plain": _per_call_us(lambda: plain.info(message, *args))}

    logging_setup.reset_for_tests()
    logging_setup.configure(json_lines=False)  # installs the factory only
    json_handler = logging.StreamHandler(io.StringIO())
    json_handler.setFormatter(logging_setup.JsonFormatter())
    redacted = _logger("bench.redacted", json_handler)
    log_calls["redacted"] = _per_call_us(lambda: redacted.info(message, *args))

    class NoOpExporter(LogExporter):
        def export(self, batch: Any) -> LogExportResult:
            return LogExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(NoOpExporter()))
    otel_logger = _logger("bench.otel", json_handler)
    otel_logger.addHandler(LoggingHandler(logger_provider=provider))
    log_calls["redacted_otel"] = _per_call_us(lambda: otel_logger.info(message, *args), calls=1000)
    results["log_call_us"] = log_calls

    def trigger(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok", status_code=200)

    request = func.HttpRequest("GET", "http://127.0.0.1/api/x", headers={"x-correlation-id": "bench-1"}, body=b"",
                               route_params={})
    decorated = observed("launch_provider")(trigger)
    request_us = {"bare": _per_call_us(lambda: trigger(request))}
    metrics.stop_opentelemetry()
    request_us["observed"] = _per_call_us(lambda: decorated(request))
    reader = InMemoryMetricReader()
    metrics.use_opentelemetry(MeterProvider(metric_readers=[reader]))
    request_us["observed_otel"] = _per_call_us(lambda: decorated(request))
    metrics.stop_opentelemetry()
    metrics.reset()
    results["request_us"] = request_us

    line = message % args
    hl7_text = "could not parse " + ("MSH|^~\\&|SCHED|H|VV|C|20260101||SIU^S12|1|T|2.3\rPID|1||Z1||DOE^JANE||\r" * 24)
    results["redact_us"] = {
        "typical_line": _per_call_us(lambda: redact(line)),
        "hl7_text_2kb": _per_call_us(lambda: redact(hl7_text[:2048]), calls=500),
    }
    logging.setLogRecordFactory(original_factory)
    logging_setup.reset_for_tests()
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
