"""The ``warmup`` function: the host runs it when it adds an instance (scale-out), before sending traffic.

It sets up logging (as every trigger does on its first call), builds the services and the queue clients and
reads the store's container properties once (``Services.warm_up``), so the first request of the instance costs
about what a warm one does. The host does not run it on a restart; then every service is still built lazily on
first use.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.dependencies import services
from functions.observability import observed

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("warmup")
@bp.warm_up_trigger("warmup")
@observed("warmup")
def warmup(warmup: object) -> None:
    """Build the services and warm the store's metadata."""
    services().warm_up()
    log.info("instance warmed up")
