"""Operator replay of a rejected HL7 message, after the configuration was fixed.

The ``rejected`` container keeps the raw bytes of every message the intake could not accept (unknown
environment, MSH-11 against the environment kind, an unsupported event, a missing field...). Once the
cause is fixed, an operator (trusted: the request signature is not checked again; it was checked, or the
environment did not exist yet, when the message arrived) runs it through the intake once more. An
accepted replay (``AA``/``CA``, including a duplicate of a message processed meanwhile) deletes the
record; any other outcome leaves it for another look. The CLI (``python -m local.ops hl7 rejected
replay``) is a thin wrapper around :func:`replay_rejected`.
"""

from __future__ import annotations

import logging

from lib.observability.safe_ids import log_control_id
from lib.scheduling.intake import IntakeResponse, IntakeService
from lib.store.messages import RejectedMessages

log = logging.getLogger(__name__)

_ACCEPTED = frozenset({"AA", "CA"})


class RejectedNotFound(LookupError):
    """No rejected message with this ID in this environment (already replayed, expired or mistyped)."""


def replay_rejected(
    environment_id: str, rejected_id: str, *, intake: IntakeService, rejected: RejectedMessages
) -> IntakeResponse:
    """Re-run the intake on a kept message; delete the record when it is now accepted.

    Args:
        environment_id: the environment the message was posted to.
        rejected_id: the ``rejectedMessageId`` quoted in the ACK / problem response.
        intake: the intake service (``functions.dependencies.services().intake``).
        rejected: the rejected-message store (``services().repos.rejected``).

    Returns:
        The intake's answer (an ACK or a problem document), exactly as the sender would get it.

    Raises:
        RejectedNotFound: no such record.
        lib.store.errors.StoreUnavailable: the store cannot be reached.
    """
    kept = rejected.get(environment_id, rejected_id)
    if kept is None:
        raise RejectedNotFound(f"no rejected message {rejected_id} in environment {environment_id}")
    response = intake.replay(environment_id, kept.raw)
    if response.ack_code in _ACCEPTED:
        rejected.delete(environment_id, rejected_id)
    log.info(
        "hl7 replay env=%s rejected_id=%s msh10=%s status=%d ack=%s",
        environment_id, rejected_id, log_control_id(kept.control_id), response.status, response.ack_code,
    )
    return response
