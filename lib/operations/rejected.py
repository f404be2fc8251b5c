"""Rejected HL7 messages for operators: list, show (metadata, never the raw message), replay.

Replay uses :func:`lib.scheduling.replay.replay_rejected` (the intake again, trusted, on the kept bytes;
an accepted replay deletes the record) and then hands texts now due to the ``sms-outbox`` queue as the
HTTP trigger would (the reminder timer sends them anyway when the queue is down).
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

    @classmethod
    def of(cls, message: RejectedMessage) -> RejectedSummary:
        """The summary of a stored rejected message."""
        return cls(message.id, message.environment_id, message.received_utc, message.reason, message.err_code,
                   message.control_id, len(message.raw))

    def to_json(self) -> dict[str, Any]:
        """JSON shape for ``local.ops``."""
        return {"id": self.id, "environmentId": self.environment_id, "receivedUtc": self.received_utc,
                "reason": self.reason, "errCode": self.err_code, "controlId": self.control_id,
                "sizeBytes": self.size_bytes}


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
    and how many texts were handed to the queue."""

    status: int
    ack_code: str | None
    accepted: bool
    texts_queued: int

    def to_json(self) -> dict[str, Any]:
        """JSON shape for ``local.ops``."""
        return {"status": self.status, "ackCode": self.ack_code, "accepted": self.accepted,
                "textsQueued": self.texts_queued}


def replay(services: Any, environment_id: str, rejected_id: str) -> ReplayResult:
    """Replay one rejected message (see the module docstring).

    Raises:
        lib.scheduling.replay.RejectedNotFound: no such record.
        lib.store.errors.StoreUnavailable: the store cannot be reached.
    """
    from lib.queues import SMS_OUTBOX_QUEUE
    from lib.scheduling.replay import replay_rejected

    response = replay_rejected(environment_id, rejected_id, intake=services.intake, rejected=services.repos.rejected)
    queued = 0
    for item_id in response.outbox_to_send:
        try:
            services.queues.send(SMS_OUTBOX_QUEUE, {"id": item_id})
            queued += 1
        except Exception:  # the reminder timer sends due items anyway
            break
    return ReplayResult(response.status, response.ack_code, response.ack_code in ("AA", "CA"), queued)
