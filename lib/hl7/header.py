"""MSH reading: what is needed to route, de-duplicate and acknowledge any HL7 v2 message.

Used for every inbound body, SIU or not, so that even a message we reject (ORU, ADT, an ACK...)
gets a correctly addressed ACK (hl7.md §8).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lib.hl7.er7 import Er7Message, Separators
from lib.hl7.framing import unframe
from lib.hl7.times import parse_dtm

__all__ = ["MessageHeader", "header_from_message", "read_header", "read_message"]


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """The MSH segment of one message.

    Hierarchic-designator fields (MSH-3..6) are kept exactly as sent, components and escapes
    included (e.g. ``GHHSFacility^2.16.840.1.122848.1.30^ISO``, ``MirthHL7Test\\S\\GUID``), so the
    ACK can echo them and they can serve as opaque keys. Coded fields are component 1, unescaped and
    stripped (``""`` when absent).

    Attributes:
        separators: MSH-1 and MSH-2 delimiters of the message.
        sending_application: MSH-3, raw field.
        sending_facility: MSH-4, raw field (part of the duplicate-detection key, contracts.md).
        receiving_application: MSH-5, raw field.
        receiving_facility: MSH-6, raw field.
        message_datetime_raw: MSH-7 component 1 as sent, stripped (e.g. ``2010052711090000``).
        message_datetime: MSH-7 parsed; aware (fixed offset) when MSH-7 carries ``+/-ZZZZ``, naive
            (sender-local, zone unknown here) otherwise; None when absent or unparseable.
        message_type: MSH-9.1 (e.g. ``SIU``).
        trigger_event: MSH-9.2 (e.g. ``S12``).
        message_structure: MSH-9.3 (e.g. ``SIU_S12``), informative only; never used for routing.
        control_id: MSH-10.1, echoed in MSA-2.
        processing_id: MSH-11.1 (``P``, ``T``, ``D``).
        version: MSH-12.1 (e.g. ``2.5.1``).
        accept_ack_type: MSH-15.1 (table 0155: AL, NE, ER, SU), ``""`` when empty.
        application_ack_type: MSH-16.1, ``""`` when empty.
        charset: MSH-18.1 as sent (e.g. ``UNICODE UTF-8``, ``8859/1``), ``""`` when empty.
        codec: the Python codec the message was decoded with (``utf-8``, ``latin-1``, ``cp1252``...);
            the ACK is encoded with it.
    """

    separators: Separators
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_datetime_raw: str
    message_datetime: datetime | None
    message_type: str
    trigger_event: str
    message_structure: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str
    charset: str
    codec: str

    @property
    def enhanced_mode(self) -> bool:
        """True when MSH-15 or MSH-16 is valued: acknowledge with CA/CE/CR (hl7.md §8)."""
        return bool(self.accept_ack_type or self.application_ack_type)

    def sent_by_any_of(self, facilities: tuple[str, ...]) -> bool:
        """Whether MSH-4 is one of ``facilities`` (the environment's binding; empty binds nothing).

        An entry matches the whole MSH-4 (components joined by ``^`` whatever the message's component
        separator) or its first component, the namespace ID; case-insensitive, surrounding spaces ignored.
        """
        if not facilities:
            return True
        whole = self.sending_facility.strip()
        if self.separators.component != "^":
            whole = whole.replace("^", "\x00").replace(self.separators.component, "^")
        namespace = whole.split("^", 1)[0].strip()
        sent = {whole.upper(), namespace.upper()} - {""}
        return any(entry.strip().upper() in sent for entry in facilities)

    @property
    def is_ack(self) -> bool:
        """True for an ACK message (MSH-9.1 ``ACK``): never acknowledge an ACK (hl7.md §8)."""
        return self.message_type.upper() == "ACK"


def header_from_message(msg: Er7Message) -> MessageHeader:
    """Build the :class:`MessageHeader` of an already decoded message."""
    msh = msg.first("MSH")
    v = msg.value
    dt_raw = v(msh, 7)
    msh9 = [msg.rep_value(rep, comp) for rep in (msg.raw(msh, 9),) for comp in (1, 2, 3)]
    return MessageHeader(
        # A message whose delimiters are unusable is answered with the standard ones.
        separators=msg.seps if msg.problem is None else Separators(),
        sending_application=msg.raw(msh, 3),
        sending_facility=msg.raw(msh, 4),
        receiving_application=msg.raw(msh, 5),
        receiving_facility=msg.raw(msh, 6),
        message_datetime_raw=dt_raw,
        message_datetime=parse_dtm(dt_raw) if dt_raw else None,
        message_type=msh9[0],
        trigger_event=msh9[1],
        message_structure=msh9[2],
        control_id=v(msh, 10),
        processing_id=v(msh, 11),
        version=v(msh, 12),
        accept_ack_type=v(msh, 15),
        application_ack_type=v(msh, 16),
        charset=msg.charset,
        codec=msg.codec,
    )


def read_header(raw: bytes) -> MessageHeader:
    """Read only what the MSH segment says, for routing and for the ACK.

    Args:
        raw: the request body, MLLP-framed or not, any line endings (see :func:`unframe`).

    Returns:
        The :class:`MessageHeader`. No field is required here; :func:`lib.hl7.siu.parse_siu`
        validates MSH-9/10/11/12.

    Raises:
        NotHL7: no MSH segment, unusable MSH-1, or broken MLLP framing.
        HL7Rejected: 102 when MSH-2 (encoding characters) is unusable.
    """
    return header_from_message(Er7Message.from_bytes(unframe(raw)))


def read_message(raw: bytes) -> tuple[Er7Message, MessageHeader]:
    """Decode a body once: the message (handed on to :func:`lib.hl7.siu.siu_from_message`) and its MSH.

    Raises:
        NotHL7, HL7Rejected: as :func:`read_header`.
    """
    msg = Er7Message.from_bytes(unframe(raw))
    return msg, header_from_message(msg)
