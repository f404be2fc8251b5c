"""A throwaway FunctionApp that exercises the dev runner (tests only; not part of the product).

State is kept in module-level lists so tests can observe invocations; tests reset it with :func:`reset`.
"""

from __future__ import annotations

import json
import threading

import azure.functions as func

bp = func.Blueprint()

TICKS: list[bool] = []  # past_due of each tick run
SLOW_RUNS: list[str] = []  # "start" / "end" markers of the slow timer
SLOW_GATE = threading.Event()  # the slow timer blocks until this is set
QUEUE_BODIES: list[tuple[bytes, int]] = []  # (body, dequeue_count) of each queue invocation
POISON_BODIES: list[bytes] = []


def reset() -> None:
    """Forget every recorded invocation."""
    for recorded in (TICKS, SLOW_RUNS, QUEUE_BODIES, POISON_BODIES):
        recorded.clear()
    SLOW_GATE.clear()


@bp.route(route="items/{itemId}", methods=["GET", "POST"])
def items(req: func.HttpRequest) -> func.HttpResponse:
    """Echo the request as JSON and set two cookies."""
    echo = {
        "method": req.method,
        "url": req.url,
        "routeParams": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode("utf-8"),
        "contentType": req.headers.get("content-type"),
    }
    response = func.HttpResponse(json.dumps(echo), status_code=200, mimetype="application/json")
    response.headers.add("Set-Cookie", "a=1; Path=/; HttpOnly")
    response.headers.add("Set-Cookie", "b=2; Path=/; Secure")
    return response


@bp.route(route="items/special", methods=["GET"])
def special(req: func.HttpRequest) -> func.HttpResponse:
    """A literal route that must win over ``items/{itemId}``."""
    return func.HttpResponse("special")


@bp.route(route="files/{*path}", methods=["GET"])
def files(req: func.HttpRequest) -> func.HttpResponse:
    """Catch-all route parameter."""
    return func.HttpResponse(req.route_params.get("path", ""))


@bp.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    """Always raises, with text that must never reach the client."""
    raise RuntimeError("secret patient detail")


@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    """Record each run (once a minute, at second 0)."""
    TICKS.append(timer.past_due)


@bp.timer_trigger(schedule="*/10 * * * * *", arg_name="timer")
def slow(timer: func.TimerRequest) -> None:
    """Block until ``SLOW_GATE`` is set (at most 10 s), to test the one-run-at-a-time rule."""
    SLOW_RUNS.append("start")
    SLOW_GATE.wait(10)
    SLOW_RUNS.append("end")


@bp.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage) -> None:
    """Fail while the body contains ``fail``."""
    body = msg.get_body()
    QUEUE_BODIES.append((body, msg.dequeue_count))
    if b"fail" in body:
        raise ValueError("asked to fail")


@bp.queue_trigger(arg_name="msg", queue_name="%SAMPLE_POISON_QUEUE%", connection="AzureWebJobsStorage")
def on_poison(msg: func.QueueMessage) -> None:
    """Record poison messages (point ``SAMPLE_POISON_QUEUE`` at ``<SAMPLE_QUEUE>-poison`` to consume them)."""
    POISON_BODIES.append(msg.get_body())


app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bp)
