"""The intake's answer when the connector itself cannot work (a secret that did not resolve, a client that
could not be built): HTTP 503 with an HL7 ``AE`` ACK (MSA-2 = the message's MSH-10) and ``Retry-After``, so
the interface engine queues the message and sends it again, as it does for any AE. Nothing of the body is trusted or
kept: only the MSH is read, to address the ACK; a body without a readable MSH gets a 503 problem document.
"""

from __future__ import annotations

import json
import uuid

from lib.clock import SystemClock
from lib.hl7.ack import build_ack
from lib.hl7.errors import HL7Rejected, NotHL7
from lib.hl7.framing import unframe
from lib.hl7.header import read_header
from lib.scheduling.intake import RETRY_LATER, STORE_UNAVAILABLE_REASON, IntakeResponse, ack_content_type

#: Only the start of the body is read for its MSH (the body's size has not been checked yet).
MSH_READ_LIMIT = 65536


def unavailable_response(body: bytes, reason: str) -> IntakeResponse:
    """503 (``Retry-After``) with an ``AE`` ACK carrying ``reason`` (no secret, no PHI), or a 503 problem when
    no MSH is readable."""
    try:
        header = read_header(unframe(body[:MSH_READ_LIMIT]))
    except (NotHL7, HL7Rejected, ValueError):
        doc = {"type": "about:blank", "title": "Intake unavailable", "status": 503, "detail": reason}
        return IntakeResponse(503, json.dumps(doc).encode(), "application/problem+json", headers=RETRY_LATER)
    ack = build_ack(header, code="AE", reason=reason, err_code="207", now=SystemClock().now(),
                    control_id=uuid.uuid4().hex[:20])
    return IntakeResponse(503, ack, ack_content_type(header), ack_code="AE", headers=RETRY_LATER)


def store_unavailable_response(body: bytes) -> IntakeResponse:
    """:func:`unavailable_response` for a store that cannot be reached (at any step, even before the
    environment is known): the same ``AE`` the intake answers when the store fails mid-message."""
    return unavailable_response(body, STORE_UNAVAILABLE_REASON)
