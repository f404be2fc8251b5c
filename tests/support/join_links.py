"""A booked visit with a working SMS join link, as the intake would leave it: the appointment, its link
document and the signed token that goes into the text."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any


def visit_with_join_link(app: Any, environment_id: str, csn: str, start: datetime, *,
                         minutes: int = 20) -> tuple[Any, str]:
    """Store a booked ``minutes``-long visit starting at ``start`` (America/New_York) with a join link valid until
    3 hours after its start; returns the appointment and the link's token (``/api/join/{token}``)."""
    from lib.models import Appointment

    link_id = secrets.token_urlsafe(16)
    appointment = app.repos.appointments.create(Appointment(
        environment_id, csn, "booked", start, start + timedelta(minutes=minutes), minutes, "America/New_York",
        link_id=link_id))
    expires = start + timedelta(hours=3)
    app.repos.links.put(link_id, appointment.key, expires=expires, now=datetime.now(UTC))
    return appointment, app.join_links.token(link_id, expires)
