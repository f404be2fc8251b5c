"""Typed errors of the HL7 v2 intake.

Two outcomes exist for a body we cannot accept:

- :class:`HL7Rejected`: the body is an HL7 v2 message (an MSH segment was found), so the caller
  answers with an ACK built by :func:`lib.hl7.ack.build_ack` carrying ``ack_code``, ``err_code``
  (HL7 table 0357) and ``location`` (ERR-2).
- :class:`NotHL7`: no MSH header can be found (or the transport framing is broken), so no ACK can
  be addressed; the caller answers with an HTTP problem response instead.

Reasons are written for an interface analyst and never contain PHI: they name segments and fields
(``SCH-2``), and may quote identifiers such as MSH-10, never names, phone numbers or free text.
Source: hl7.md §8 (ACK codes), HL7 table 0357 (message error condition codes).
"""

from __future__ import annotations

__all__ = ["ERR_CODE_TEXT", "HL7Rejected", "NotHL7"]

#: HL7 table 0357 (message error condition codes) used by this package, code -> table text.
ERR_CODE_TEXT: dict[str, str] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}


class HL7Rejected(Exception):
    """An HL7 v2 message we will not accept, with everything needed to build the error ACK.

    Attributes:
        reason: one sentence for an interface analyst, free of PHI (field names, MSH-10 at most).
        err_code: HL7 table 0357 code as a string: ``"100"`` segment sequence error, ``"101"``
            required field missing, ``"102"`` data type error, ``"103"`` table value not found,
            ``"200"`` unsupported message type, ``"201"`` unsupported event code, ``"202"``
            unsupported processing id, ``"203"`` unsupported version id, ``"207"`` application
            internal error.
        ack_code: ``"AR"`` (default: permanent, the sender must not resend as is) or ``"AE"``
            (application error, e.g. transient). :func:`build_ack` maps these to CR/CE in
            enhanced acknowledgement mode.
        segment: segment ID of the error location (ERR-2.1), e.g. ``"SCH"``, or None.
        field: field position of the error location (ERR-2.3), e.g. ``2`` for SCH-2, or None.
        location (constructor keyword, alternative to segment/field): ERR-2 text such as
            ``"MSH^1^11"``; parsed into ``segment`` and ``field``.

    Raises:
        ValueError: at construction, when ``err_code`` is not in table 0357 as used here or
            ``ack_code`` is not AR/AE.
    """

    def __init__(
        self,
        reason: str,
        err_code: str = "207",
        *,
        ack_code: str = "AR",
        segment: str | None = None,
        field: int | None = None,
        location: str | None = None,
    ) -> None:
        if err_code not in ERR_CODE_TEXT:
            raise ValueError(f"unknown HL7 table 0357 code {err_code!r}")
        if ack_code not in ("AR", "AE"):
            raise ValueError(f"ack_code must be 'AR' or 'AE', not {ack_code!r}")
        if location and segment is None:
            parts = location.split("^")
            segment = parts[0] or None
            if len(parts) > 2 and parts[2].isdigit():
                field = int(parts[2])
        super().__init__(reason)
        self.reason = reason
        self.err_code = err_code
        self.ack_code = ack_code
        self.segment = segment
        self.field = field

    @property
    def location(self) -> str | None:
        """ERR-2 error location as ``SEG^1^field`` (``^`` separators), e.g. ``"SCH^1^2"``; None when unknown."""
        if self.segment is None:
            return None
        if self.field is None:
            return f"{self.segment}^1"
        return f"{self.segment}^1^{self.field}"

    def __repr__(self) -> str:
        return (
            f"HL7Rejected({self.reason!r}, err_code={self.err_code!r}, ack_code={self.ack_code!r}, "
            f"location={self.location!r})"
        )


class NotHL7(Exception):
    """The body is not an HL7 v2 message we can address an ACK to.

    Raised when no MSH segment can be found, when MSH-1 is unusable as a field separator, or when
    the MLLP framing is broken (start block without end block or the reverse). The caller answers
    with an HTTP problem response (e.g. 400) because MSA-2 cannot be filled.

    Attributes:
        reason: one sentence for an interface analyst, free of PHI.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
