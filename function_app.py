"""The Azure Functions app: registers the blueprints in ``functions/`` and nothing else at import."""

import azure.functions as func

from functions import (
    admin,
    events,
    health,
    hl7_intake,
    join,
    launch,
    portal,
    reminders,
    reports,
    static,
    warmup,
    writeback,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in (hl7_intake.bp, launch.bp, join.bp, reminders.bp, writeback.bp, events.bp, health.bp, static.bp,
                  reports.bp, warmup.bp, admin.bp, portal.bp):
    app.register_functions(blueprint)
