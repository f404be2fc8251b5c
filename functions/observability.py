"""The one decorator every trigger wears: logging set up, correlation ID in scope, metrics from outcomes.

Usage (innermost, right above the function, so the host still sees the original signature)::

    @bp.function_name("hl7_intake")
    @bp.route(route="hl7/{environmentId}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    @observed("hl7_intake")
    def hl7_intake(req: func.HttpRequest) -> func.HttpResponse: ...

Per invocation it:
1. configures logging once per process (:func:`lib.observability.logging_setup.configure_from_settings`
   with :func:`lib.settings.load_telemetry_settings`, which never fails);
2. runs the function under the correlation ID that came in (HTTP ``x-correlation-id`` header, queue
   message ``correlationId``) or a new one; ``functions.http.correlation_id`` answers the same ID;
3. records the metrics the trigger's answer shows (``hl7_intake``: trigger event and ACK code from the
   ACK; launch and join pages: ``ok`` or ``error`` with the page's error code);
4. answers an HTTP request whose trigger let :class:`lib.store.errors.StoreUnavailable` escape with a 503
   problem (``STORE_UNAVAILABLE``, ``Retry-After``), never the host's bare 500: the last line behind each
   trigger's own mapping. Queue and timer triggers still raise (the host delivers the message again).

Only the standard library is imported at module level (``function_app`` import stays cheap).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_LAUNCH_KINDS = {
    "launch_provider": "provider",
    "launch_patient": "patient",
    "launch_callback": "callback",
    "join_page": "join",
}
_ERROR_CODE = re.compile(rb'id="error-code">([A-Z0-9_]{1,40})<')


def _ensure_logging() -> None:
    from lib.observability import logging_setup

    if not logging_setup.is_configured():
        from lib.settings import load_telemetry_settings

        logging_setup.configure_from_settings(load_telemetry_settings())


def _incoming_correlation(argument: Any) -> str | None:
    """The correlation ID an HTTP request or a queue message carries, if any."""
    headers = getattr(argument, "headers", None)
    if headers is not None and hasattr(argument, "route_params"):
        return (headers.get("x-correlation-id") or "").strip() or None
    if hasattr(argument, "dequeue_count") and hasattr(argument, "get_body"):
        from lib.queues import decode

        try:
            value = decode(argument.get_body()).get("correlationId")
        except Exception:  # a malformed message: the function drops it
            return None
        return value if isinstance(value, str) else None
    return None


def _record_answer(name: str, answer: Any) -> None:
    from lib.observability import metrics

    status = getattr(answer, "status_code", None)
    if status is None:
        return
    if name == "hl7_intake":
        event, code = metrics.hl7_outcome_from_ack(answer.get_body() or b"", status)
        metrics.hl7_message(event, code)
    elif name in _LAUNCH_KINDS:
        if status < 400:
            metrics.launch(_LAUNCH_KINDS[name], "ok")
        else:
            found = _ERROR_CODE.search(answer.get_body() or b"")
            metrics.launch(_LAUNCH_KINDS[name], "error", found.group(1).decode() if found else f"http_{status}")


def _record_failure(name: str) -> None:
    """A queue function raised: the host will deliver the message again."""
    from lib.observability import metrics

    if name == "writeback":
        metrics.writeback("error")
    elif name == "sms_outbox":
        metrics.sms_message(None, "error")


def observed(name: str) -> Callable[[F], F]:
    """Decorate the trigger function ``name`` (see the module docstring). Exceptions pass through, except an
    HTTP trigger's ``StoreUnavailable``."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from lib.observability import correlation

            _ensure_logging()
            incoming = next(
                (found for found in map(_incoming_correlation, (*args, *kwargs.values())) if found), None
            )
            with correlation.scope(incoming):
                try:
                    answer = function(*args, **kwargs)
                except Exception as exc:
                    answer = _store_unavailable_answer(exc, (*args, *kwargs.values()))
                    if answer is None:
                        _record_failure(name)
                        raise
                try:
                    _record_answer(name, answer)
                except Exception:  # metrics never change the answer
                    logging.getLogger(__name__).warning("metrics not recorded for %s", name)
                return answer

        wrapper.observed_as = name  # type: ignore[attr-defined]  # lets a test see every trigger wears it
        return wrapper  # type: ignore[return-value]

    return decorate


def _store_unavailable_answer(exc: Exception, arguments: tuple[Any, ...]) -> Any:
    """The 503 problem for an HTTP invocation that raised ``StoreUnavailable``; ``None`` otherwise."""
    from lib.store.errors import StoreUnavailable

    if not isinstance(exc, StoreUnavailable):
        return None
    request = next((a for a in arguments if hasattr(a, "route_params") and hasattr(a, "headers")), None)
    if request is None:
        return None
    from functions.http import correlation_id, problem

    correlation = correlation_id(request)
    logging.getLogger(__name__).warning("store unavailable code=STORE_UNAVAILABLE correlation=%s", correlation)
    answer = problem(503, "Unavailable", "The connector's store is busy; nothing was lost. Try again in a moment.",
                     correlation=correlation, code="STORE_UNAVAILABLE")
    answer.headers["Retry-After"] = "30"
    return answer


def sms_outcome(item_id: str, outcome: str) -> None:
    """Count one ``sms-outbox`` send: the kind comes from the outbox ID (``{env}|{appointment}|{kind}|{rev}``)."""
    from lib.observability import metrics

    parts = item_id.split("|")
    metrics.sms_message(parts[2] if len(parts) > 3 else None, outcome)


def sms_run(outcomes: dict[str, int]) -> None:
    """Count the sends of one reminder-timer run (``RunReport.outcomes``: outcome word -> count)."""
    from lib.observability import metrics

    for outcome, count in outcomes.items():
        metrics.sms_message("due", outcome, count=count)
