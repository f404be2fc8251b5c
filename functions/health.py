"""HTTP triggers ``GET /api/health/live`` and ``GET /api/health/ready``.

- ``health/live``: 200 ``{"status": "live"}`` whenever the worker runs the function; no I/O, no settings.
- ``health/ready``: 200 when configuration, Cosmos DB and the queues answer, else 503; JSON naming each
  dependency (:mod:`lib.operations.health`), never a secret or an exception message; bounded in time.

``scripts/deploy.sh`` waits for ``health/ready`` after publishing, and the Application Insights
availability test of ``infra/app/alerts.bicep`` probes both.
"""

from __future__ import annotations

import json

import azure.functions as func

from functions.dependencies import services
from functions.observability import observed

bp = func.Blueprint()

_HEADERS = {"Cache-Control": "no-store"}


@bp.function_name("health_live")
@bp.route(route="health/live", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("health_live")
def health_live(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness: answers 200 at once (the process and the worker are up)."""
    return func.HttpResponse('{"status": "live"}', status_code=200, mimetype="application/json", headers=_HEADERS)


@bp.function_name("health_ready")
@bp.route(route="health/ready", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("health_ready")
def health_ready(req: func.HttpRequest) -> func.HttpResponse:
    """Readiness: 200 ``{"status": "ready", ...}`` or 503 ``{"status": "not-ready", "failing": [...]}``."""
    from lib.operations.health import check_readiness

    readiness = check_readiness(services)
    return func.HttpResponse(
        json.dumps(readiness.to_json()),
        status_code=200 if readiness.ready else 503,
        mimetype="application/json",
        headers=_HEADERS,
    )
