"""The Cosmos DB containers the code expects: name, partition key path and default TTL.

Used by the local set-up (to create them on the Cosmos-compatible server) and by the Bicep structure tests
(every container here must exist in ``infra/`` with the same partition key and TTL).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ContainerSpec:
    """One container: ``partition_key`` is a path like ``/id``; ``default_ttl`` in seconds, ``-1`` = on
    with per-item ``ttl``, ``None`` = off."""

    name: str
    partition_key: str
    default_ttl: int | None = None


#: The container of the visits' documents: one partition per visit (lib/store/visits.py).
VISITS = "visits"

CONTAINERS: tuple[ContainerSpec, ...] = (
    ContainerSpec("environments", "/id"),
    # One partition per visit: its appointment, phone number and texts, written together (lib/store/visits.py).
    ContainerSpec(VISITS, "/appointmentKey", default_ttl=-1),
    # One partition per HL7 message: its ACK and signatures, and the join link of the visit it booked
    # (lib/store/messages.py, lib/store/links.py).
    ContainerSpec("hl7_messages", "/messageKey", default_ttl=-1),
    ContainerSpec("rejected", "/environmentId", default_ttl=-1),
    ContainerSpec("launch_states", "/id", default_ttl=-1),
    ContainerSpec("visit_events", "/appointmentKey", default_ttl=-1),
    ContainerSpec("users", "/id"),
    ContainerSpec("timer_state", "/id"),
    ContainerSpec("sms_messages", "/id", default_ttl=-1),
    ContainerSpec("opt_outs", "/id", default_ttl=-1),
    ContainerSpec("hl7_jti", "/id", default_ttl=-1),
    # Each document deletes itself 30 days after its visit (lib/store/graph_subscriptions.py).
    ContainerSpec("graph_subscriptions", "/id", default_ttl=-1),
    ContainerSpec("presence", "/id", default_ttl=-1),
    ContainerSpec("participant_identities", "/id", default_ttl=-1),
    ContainerSpec("call_quality", "/id"),
    ContainerSpec("report_visits", "/id"),
    ContainerSpec("report_days", "/id"),
    ContainerSpec("audit", "/environmentId"),
    ContainerSpec("portal_operations", "/id", default_ttl=-1),
    # One document per normalised FHIR base URL naming the environment that holds it (lib/store/fhir_url_claims.py).
    ContainerSpec("fhir_url_claims", "/id"),
)
