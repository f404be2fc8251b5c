"""Operator replay of a rejected HL7 message, after the configuration was fixed.

The ``rejected`` container keeps the raw bytes of every message the intake could not accept (unknown
environment, MSH-11 against the environment kind, an unsupported event, a missing field...). Once the
cause is fixed, an operator runs it through the intake once more. An accepted replay (``AA``/``CA``, including
a duplicate of a message processed meanwhile) deletes the record; any other outcome leaves it for another look.
The CLI (``python -m local.ops hl7 rejected replay``) is a thin wrapper around :func:`replay_rejected`.

Trust (docs/hl7-intake.md, "Replaying a kept message"): a message refused by a configured environment was
authenticated when it arrived, and is replayed without a signature check. A body sent to an environment that
did not exist yet was not (anyone can post to any URL): its kept signature must verify with the environment's
certificate now, its times judged as of the moment it was received. When it does not (no signature, signed with
another key, expired relative to its arrival), the replay is refused with :class:`ReplayNotAuthenticated` and
nothing is applied; the operator asks the sender to send it again, signed, or, having confirmed with the sender
that it is theirs, replays it with ``trust_unauthenticated`` (logged at WARNING and audited by the caller).
"""

from __future__ import annotations

import logging
from datetime import datetime

from lib.observability.safe_ids import log_control_id
from lib.scheduling.intake import IntakeResponse, IntakeService, Problem
from lib.store.messages import RejectedMessage, RejectedMessages

log = logging.getLogger(__name__)

_ACCEPTED = frozenset({"AA", "CA"})


class RejectedNotFound(LookupError):
    """No rejected message with this ID in this environment (already replayed, expired or mistyped)."""


class ReplayNotAuthenticated(Exception):
    """The kept message was never authenticated and its signature does not verify now: nothing was applied.

    ``code`` is the signature check's reason code (``signature_missing``, ``signature_invalid``...,
    :mod:`lib.scheduling.signature`); ``detail`` its sentence.
    """

    def __init__(self, code: str | None, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


def replay_rejected(
    environment_id: str, rejected_id: str, *, intake: IntakeService, rejected: RejectedMessages,
    trust_unauthenticated: bool = False,
) -> IntakeResponse:
    """Re-run the intake on a kept message; delete the record when it is now accepted.

    Args:
        environment_id: the environment the message was posted to.
        rejected_id: the ``rejectedMessageId`` quoted in the ACK / problem response.
        intake: the intake service (``functions.dependencies.services().intake``).
        rejected: the rejected-message store (``services().repos.rejected``).
        trust_unauthenticated: replay a never-authenticated message whose signature does not verify, as trusted
            (the operator confirmed its origin with the sender; the caller audits it).

    Returns:
        The intake's answer (an ACK or a problem document), exactly as the sender would get it.

    Raises:
        RejectedNotFound: no such record.
        ReplayNotAuthenticated: the message was never authenticated, its signature does not verify, and
            ``trust_unauthenticated`` is not set.
        lib.store.errors.StoreUnavailable: the store cannot be reached.
    """
    kept = rejected.get(environment_id, rejected_id)
    if kept is None:
        raise RejectedNotFound(f"no rejected message {rejected_id} in environment {environment_id}")
    response = _replay(environment_id, rejected_id, kept, intake, trust_unauthenticated=trust_unauthenticated)
    if response.ack_code in _ACCEPTED:
        rejected.delete(environment_id, rejected_id)
    log.info(
        "hl7 replay env=%s rejected_id=%s msh10=%s authentication=%s status=%d ack=%s",
        environment_id, rejected_id, log_control_id(kept.control_id), kept.authentication, response.status,
        response.ack_code,
    )
    return response


def _replay(
    environment_id: str, rejected_id: str, kept: RejectedMessage, intake: IntakeService, *,
    trust_unauthenticated: bool,
) -> IntakeResponse:
    if kept.authenticated:
        return intake.replay(environment_id, kept.raw)
    try:
        received = kept.signature_received or kept.received_utc
        return intake.replay(environment_id, kept.raw, signature=kept.signature,
                             received=datetime.fromisoformat(received))
    except Problem as refused:
        if not trust_unauthenticated:
            raise ReplayNotAuthenticated(refused.code, refused.detail) from None
        log.warning("hl7 replay of an unauthenticated message trusted by the operator env=%s rejected_id=%s "
                    "signature_check=%s", environment_id, rejected_id, refused.code)
        return intake.replay(environment_id, kept.raw)
