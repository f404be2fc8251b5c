"""Rejected HL7 messages for operators: list, show (metadata, never the raw message), replay.

Replay uses :func:`lib.scheduling.replay.replay_rejected` (the intake again on the kept bytes: trusted when the
request was authenticated on arrival, else only when its kept signature verifies now; an accepted replay deletes
the record) and then hands texts now due to the ``sms-outbox`` queue as the HTTP trigger would (the reminder
timer sends them anyway when the queue is down). Replaying a never-authenticated message whose signature does
not verify takes an explicit ``trust_unauthenticated`` and is written to the audit log (container ``audit``,
action ``hl7.rejected.replay_unauthenticated``) with the operator's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.store.messages import RejectedMessage


@dataclass(frozen=True)
class RejectedSummary:
    """What an operator sees of a rejected message: no raw bytes (they hold PHI)."""

    id: str
    environment_id: str
    received_utc: str
    reason: str
    err_code: str
    control_id: str | None
    size_bytes: int
    authentication: str = "verified"
    signature_kept: bool = False
    tied_to_visit: bool = False
    delete_after: str | None = None

    @classmethod
    def of(cls, message: RejectedMessage) -> RejectedSummary:
        """The summary of a stored rejected message."""
        return cls(message.id, message.environment_id, message.received_utc, message.reason, message.err_code,
                   message.control_id, len(message.raw), message.authentication, message.signature is not None,
                   message.appointment_key is not None, message.delete_after)

    def to_json(self) -> dict[str, Any]:
        """JSON shape for ``local.ops``: ``authenticated`` false means nobody has checked who sent it (the
        environment did not exist yet); ``signatureKept`` whether a signature came with it, checked on replay."""
        return {"id": self.id, "environmentId": self.environment_id, "receivedUtc": self.received_utc,
                "reason": self.reason, "errCode": self.err_code, "controlId": self.control_id,
                "sizeBytes": self.size_bytes, "authenticated": self.authentication != "unverified",
                "authentication": self.authentication, "signatureKept": self.signature_kept,
                "tiedToVisit": self.tied_to_visit, "deleteAfter": self.delete_after}


def list_rejected(services: Any, environment_id: str, *, limit: int = 100) -> list[RejectedSummary]:
    """The newest rejected messages of one environment (newest first)."""
    return [RejectedSummary.of(m) for m in services.repos.rejected.list(environment_id, limit=limit)]


def show_rejected(services: Any, environment_id: str, rejected_id: str) -> RejectedSummary | None:
    """One rejected message's summary, or ``None``."""
    message = services.repos.rejected.get(environment_id, rejected_id)
    return RejectedSummary.of(message) if message else None


@dataclass(frozen=True)
class ReplayResult:
    """The intake's answer to a replay: HTTP status, ACK code (``AA``...), whether the record was removed,
    how many texts were handed to the queue, and, refused again, the intake's reason (MSA-3 of its ACK, or the
    problem document's ``detail``: our own text, as in the ACK the sender got)."""

    status: int
    ack_code: str | None
    accepted: bool
    texts_queued: int
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON shape for ``local.ops`` (``reason`` only when refused)."""
        shown = {"status": self.status, "ackCode": self.ack_code, "accepted": self.accepted,
                 "textsQueued": self.texts_queued}
        if not self.accepted:
            shown["reason"] = self.reason
        return shown


def replay(
    services: Any, environment_id: str, rejected_id: str, *, trust_unauthenticated: bool = False,
    operator: str | None = None,
) -> ReplayResult:
    """Replay one rejected message (see the module docstring). ``operator`` names who trusted an unauthenticated
    message (the audit entry's actor; default: this process's user and host).

    Raises:
        lib.scheduling.replay.RejectedNotFound: no such record.
        lib.scheduling.replay.ReplayNotAuthenticated: never authenticated, the signature does not verify, and
            ``trust_unauthenticated`` is not set.
        lib.store.errors.StoreUnavailable: the store cannot be reached.
    """
    from lib.queues import SMS_OUTBOX_QUEUE
    from lib.scheduling.replay import replay_rejected

    kept = services.repos.rejected.get(environment_id, rejected_id) if trust_unauthenticated else None
    if kept is not None and not kept.authenticated:
        _audit_trust(services, kept, operator or _operator())
    response = replay_rejected(environment_id, rejected_id, intake=services.intake, rejected=services.repos.rejected,
                               trust_unauthenticated=trust_unauthenticated)
    queued = 0
    for item_id in response.outbox_to_send:
        try:
            services.queues.send(SMS_OUTBOX_QUEUE, {"id": item_id})
            queued += 1
        except Exception:  # the reminder timer sends due items anyway
            break
    accepted = response.ack_code in ("AA", "CA")
    return ReplayResult(response.status, response.ack_code, accepted, queued,
                        None if accepted else _refusal_reason(response.body, response.content_type))


def _refusal_reason(body: bytes, content_type: str) -> str | None:
    """MSA-3 of an HL7 ACK, or the ``detail`` of a problem document; ``None`` when neither is there."""
    import json

    text = body.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            detail = json.loads(text).get("detail")
        except (ValueError, AttributeError):
            return None
        return detail if isinstance(detail, str) else None
    separator = text[3] if text.startswith("MSH") and len(text) > 3 else "|"
    for segment in text.replace("\n", "\r").split("\r"):
        fields = segment.split(separator)
        if fields[0] == "MSA" and len(fields) > 3 and fields[3]:
            return fields[3]
    return None


def _operator() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _audit_trust(services: Any, kept: RejectedMessage, operator: str) -> None:
    """Record, before it happens, that an operator replays a never-authenticated message as trusted."""
    from lib.config.audit import AuditLog

    AuditLog(services.store).record(
        environment_id=kept.environment_id, at=services.clock.now(), actor_id=f"ops:{operator}", actor_name=operator,
        action="hl7.rejected.replay_unauthenticated",
        summary=f"Replayed kept HL7 message {kept.id} without a verified signature (--trust-unauthenticated)",
        before=None, after={"rejectedId": kept.id, "receivedUtc": kept.received_utc,
                            "signatureKept": kept.signature is not None},
    )
