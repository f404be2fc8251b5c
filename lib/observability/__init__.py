"""Operations: logging without PHI, correlation IDs, metrics.

- :mod:`lib.observability.redaction`: removes phone numbers, e-mail addresses, tokens, HL7 text and known
  names from log messages and exception text.
- :mod:`lib.observability.correlation`: the correlation ID of the current request or message.
- :mod:`lib.observability.logging_setup`: one logging setup per process (JSON lines locally,
  OpenTelemetry to Application Insights in Azure when ``TELEMETRY_ENABLED``).
- :mod:`lib.observability.metrics`: the counters and histograms an operator alerts on.

Every module here imports only the standard library at module level: the OpenTelemetry packages load
only when telemetry is switched on.
"""
