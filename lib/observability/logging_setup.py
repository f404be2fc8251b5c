"""One logging setup per process: redaction and correlation on every record, JSON lines locally,
OpenTelemetry to Application Insights in Azure.

:func:`configure` is idempotent (the first call wins; later calls return at once) and is called by every
trigger before its work (``functions/observability.py``) and by the dev runner at start. It:

1. installs a log-record factory that stamps ``correlation_id`` (:mod:`lib.observability.correlation`) on
   every record and redacts it (:func:`lib.observability.redaction.redact_record`), so whatever handler
   sees a record later (the Functions worker's, the dev runner's, pytest's, OpenTelemetry's) sees it
   without PHI;
2. when the root logger has no handler (a plain process), adds one writing JSON lines to stderr
   (:class:`JsonFormatter`); handlers that exist (the Functions worker's) are kept as they are;
3. sets the ``azure`` loggers to WARNING (the SDKs log request URLs and headers at INFO);
4. with ``TELEMETRY_ENABLED`` and ``APPLICATIONINSIGHTS_CONNECTION_STRING``, calls
   ``azure.monitor.opentelemetry.configure_azure_monitor`` (imported here, lazily: about 0.4 s, never at
   ``function_app`` import) with the managed identity when ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
   says ``Authorization=AAD``; outbound HTTP client instrumentations are off (their URLs can carry
   identifiers and launch parameters); metrics go to the OpenTelemetry meter
   (:func:`lib.observability.metrics.use_opentelemetry`).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import IO, Any

from lib.observability import correlation, metrics
from lib.observability.redaction import redact_record

__all__ = ["JsonFormatter", "configure", "configure_from_settings", "is_configured", "reset_for_tests"]

_lock = threading.Lock()
_configured = False
_telemetry = "off"
_previous_factory: Any = None

# HTTP client and web framework instrumentations the distro would switch on: off. Outbound URLs carry
# FHIR resource IDs and SMART parameters; the web frameworks are not used here.
_INSTRUMENTATIONS_OFF = ("requests", "urllib", "urllib3", "django", "fastapi", "flask", "psycopg2")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ms), ``level``, ``logger``, ``message``, ``correlation_id``
    and, when present, ``exception`` (redacted text)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        redact_record(record)  # a no-op for records the factory made
        document: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation_id = getattr(record, "correlation_id", None)
        if correlation_id:
            document["correlation_id"] = correlation_id
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = record.stack_info
        return json.dumps(document, ensure_ascii=False)


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = _previous_factory(*args, **kwargs)
    if not hasattr(record, "correlation_id"):
        record.correlation_id = correlation.current()  # type: ignore[attr-defined]
    redact_record(record)
    if record.exc_text:
        # OpenTelemetry exports record attributes, not exc_text: keep the redacted traceback as one.
        record.exception_text = record.exc_text  # type: ignore[attr-defined]
    return record


def _install_factory() -> None:
    global _previous_factory
    current = logging.getLogRecordFactory()
    if getattr(current, "_virtualvisits", False):
        return
    _previous_factory = current
    _factory._virtualvisits = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(_factory)


def configure(
    *,
    telemetry_enabled: bool = False,
    connection_string: str | None = None,
    authentication_string: str | None = None,
    json_lines: bool | None = None,
    stream: IO[str] | None = None,
    level: int = logging.INFO,
) -> str:
    """Set up logging for this process once; returns the telemetry mode (``off``, ``azure-monitor``).

    Args:
        telemetry_enabled: ``TELEMETRY_ENABLED``; with ``connection_string`` exports to Application Insights.
        connection_string: ``APPLICATIONINSIGHTS_CONNECTION_STRING``.
        authentication_string: ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` (``Authorization=AAD``: the
            managed identity through ``DefaultAzureCredential``).
        json_lines: add a JSON-lines handler on the root logger; ``None``: only when it has no handler.
        stream: where that handler writes (stderr by default).
        level: root level set together with a new handler.

    A failure to start the exporter is logged (a warning) and leaves telemetry off: logging never stops
    the app.
    """
    global _configured, _telemetry
    if _configured:
        return _telemetry
    with _lock:
        if _configured:
            return _telemetry
        _install_factory()
        root = logging.getLogger()
        if json_lines or (json_lines is None and not root.handlers):
            handler = logging.StreamHandler(stream or sys.stderr)
            handler.setFormatter(JsonFormatter())
            root.addHandler(handler)
            root.setLevel(level)
        logging.getLogger("azure").setLevel(logging.WARNING)
        if telemetry_enabled and connection_string:
            _telemetry = _start_azure_monitor(connection_string, authentication_string)
        _configured = True
        return _telemetry


def configure_from_settings(telemetry: Any, **options: Any) -> str:
    """:func:`configure` with a :class:`lib.settings.TelemetrySettings`."""
    return configure(
        telemetry_enabled=bool(telemetry.enabled),
        connection_string=telemetry.connection_string,
        authentication_string=telemetry.authentication_string,
        **options,
    )


def _start_azure_monitor(connection_string: str, authentication_string: str | None) -> str:
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor

        credential = None
        if authentication_string and "authorization=aad" in authentication_string.lower():
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        configure_azure_monitor(
            connection_string=connection_string,
            credential=credential,
            enable_live_metrics=False,
            instrumentation_options={name: {"enabled": False} for name in _INSTRUMENTATIONS_OFF},
        )
        metrics.use_opentelemetry()
    except Exception as exc:  # never let telemetry stop the app
        logging.getLogger(__name__).warning("telemetry not started (%s); logging locally only", type(exc).__name__)
        return "off"
    return "azure-monitor"


def is_configured() -> bool:
    """Whether :func:`configure` has run in this process."""
    return _configured


def reset_for_tests() -> None:
    """Forget the setup (tests and the benchmark): the factory stays installed, handlers stay."""
    global _configured, _telemetry
    with _lock:
        _configured = False
        _telemetry = "off"
