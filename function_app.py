"""The Azure Functions app: registers the blueprints in ``functions/`` and nothing else at import."""

import azure.functions as func

from functions import (
    admin,
    call_records,
    events,
    health,
    hl7_intake,
    join,
    launch,
    launch_followup,
    notifications,
    portal,
    reminders,
    reports,
    static,
    subscriptions,
    visit_status,
    warmup,
    writeback,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in (hl7_intake.bp, launch.bp, join.bp, reminders.bp, writeback.bp, events.bp, health.bp, static.bp,
                  reports.bp, warmup.bp, notifications.bp, subscriptions.bp, visit_status.bp, call_records.bp,
                  admin.bp, portal.bp, launch_followup.bp):
    app.register_functions(blueprint)
