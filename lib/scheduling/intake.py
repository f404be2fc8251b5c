"""HL7 SIU intake: from the request body to a stored appointment, planned texts and an ACK.

Order of work for one message (docs/hl7-intake.md):
1. the environment must exist; request authentication (``RequestVerifier``, the JWS scheme of
   :mod:`lib.scheduling.signature`) runs before any parsing;
2. MLLP framing stripped, MSH read (no MSH: an HTTP problem, since no ACK can be built; an inbound ACK is
   never acknowledged: HTTP 400, hl7.md §8 "Do not ACK an ACK");
3. a known (environment, MSH-4, MSH-10) gets the ACK it got before and is not applied again;
4. the SIU is parsed (a message we cannot accept gets ``AR`` with the reason and is kept for replay);
5. the texts are planned and the visit's documents written in one transactional batch in the visit's
   partition (``lib/store/visits.py``): the appointment (created without a read for a new booking, else
   replaced with ``If-Match``; a stale message changes nothing), its phone number apart, its new texts;
6. only then the ``AA`` is recorded and returned, in one batch with the join link of a visit this message
   booked (its link ID is the message's partition, ``lib/store/messages.py``); another visit's link, when it
   changes, is written beside the visit's batch. A store outage gives ``AE`` with HTTP 503.

A rejected message is kept (raw bytes, restricted container ``rejected`` with a TTL) so an operator can
replay it after fixing the configuration (:meth:`IntakeService.replay`, :mod:`lib.scheduling.replay`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from lib.clock import Clock
from lib.hl7.ack import build_ack
from lib.hl7.er7 import Er7Message
from lib.hl7.errors import HL7Rejected, NotHL7
from lib.hl7.framing import unframe
from lib.hl7.header import MessageHeader, read_message
from lib.hl7.siu import SiuMessage, siu_from_message
from lib.models import Appointment, EnvironmentConfig, OutboxItem, appointment_key
from lib.observability import metrics
from lib.observability.safe_ids import log_control_id
from lib.scheduling.apply import Applied, apply_message, forgets_phone, keeps_phone
from lib.scheduling.keep_limit import KeepLimiter
from lib.scheduling.message_time import message_time
from lib.scheduling.ordering import order_key
from lib.scheduling.refused_keep import keep_terms
from lib.scheduling.visit_identity import MessageIdentity, identity_conflict
from lib.scheduling.visit_window import check_visit_window
from lib.sms.planner import plan_texts
from lib.store.contacts import ContactRepository, phone_document
from lib.store.environments import EnvironmentRepository
from lib.store.errors import AlreadyExists, ConcurrencyConflict, StoreError, StoreUnavailable
from lib.store.links import LinkRepository, link_document
from lib.store.messages import ProcessedMessages, RejectedMessages, processed_id
from lib.store.messages import Signature as SignedRequest
from lib.store.outbox import OutboxRepository
from lib.store.visits import VisitDocuments
from lib.stored_settings import NOT_FOR_INTAKE, UnusableSetting, check_usable

log = logging.getLogger(__name__)

HL7_CONTENT_TYPE = "application/hl7-v2+er7"
#: Environment IDs as they appear in ``/api/hl7/{environmentId}``.
_ENVIRONMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The largest body kept for an environment that does not exist (unauthenticated: kept small).
UNKNOWN_ENVIRONMENT_KEEP_BYTES = 64 * 1024
#: IANA names of the codecs an ACK can be encoded with (it uses the inbound message's MSH-18 charset).
_IANA_CHARSET = {"utf-8": "UTF-8", "latin-1": "ISO-8859-1", "cp1252": "windows-1252", "ascii": "US-ASCII"}


def ack_content_type(header: MessageHeader | None) -> str:
    """The HTTP ``Content-Type`` of an ACK: HL7 over HTTP's media type with the charset the ACK is encoded
    in, which is the inbound message's (``application/hl7-v2+er7; charset=ISO-8859-1`` for MSH-18 8859/1)."""
    codec = header.codec if header is not None else "utf-8"
    return f"{HL7_CONTENT_TYPE}; charset={_IANA_CHARSET.get(codec, codec)}"
#: ERR-2 of the field an appointment ID was read from (``SiuMessage.appointment_id_source``).
_ID_FIELD = {"SCH-2": ("SCH", 2), "SCH-1": ("SCH", 1), "PV1-19": ("PV1", 19)}
#: Phone numbers are kept until the visit's end plus this grace period.
CONTACT_GRACE = timedelta(hours=2)
#: Longest a cancelled visit's number is kept for its cancellation text (deleted as soon as the text is done).
CANCEL_NOTICE_WINDOW = timedelta(hours=2)


#: Every 503 of the intake asks the sender to wait this long before sending again (``Retry-After``, seconds).
RETRY_LATER: tuple[tuple[str, str], ...] = (("Retry-After", "30"),)
#: MSA-3 of the ``AE`` answered while the store cannot be reached.
STORE_UNAVAILABLE_REASON = "The connector's store is unavailable; send the message again."


@dataclass(frozen=True)
class IntakeResponse:
    """What the HTTP trigger answers.

    ``status`` is the HTTP status; ``body`` an HL7 ACK (``content_type`` ``application/hl7-v2+er7``) or an
    RFC 9457 problem document (``application/problem+json``); ``ack_code`` is MSA-1 when an ACK was built;
    ``rejected_id`` the ID under which a rejected message was kept; ``headers`` extra response headers
    (``WWW-Authenticate`` on a 401); ``outbox_to_send`` the IDs of the outbox items due now;
    ``changed_appointment`` the key of the appointment the message changed (for the reports' queue).
    """

    status: int
    body: bytes
    content_type: str
    ack_code: str | None = None
    rejected_id: str | None = None
    outbox_to_send: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    changed_appointment: str | None = None


class Problem(Exception):
    """An HTTP problem answer (RFC 9457): ``status``, ``title``, ``detail`` (no PHI), an optional reason
    ``code`` (e.g. ``signature_expired``, see :mod:`lib.scheduling.signature`) and response ``headers``
    (e.g. ``WWW-Authenticate``) as ``(name, value)`` pairs."""

    def __init__(
        self, status: int, title: str, detail: str, *, code: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.code, self.headers = code, headers


@dataclass(frozen=True)
class PresentedSignature:
    """A request's signature kept unchecked (its environment did not exist yet): the compact JWS and the wall
    time it arrived, as of which it is checked on replay."""

    token: str
    received: datetime


class RequestVerifier(Protocol):
    """Authenticates an intake request before anything is parsed (:mod:`lib.scheduling.signature`)."""

    def authenticate(
        self, environment: EnvironmentConfig, headers: Mapping[str, str], body: bytes, *, at: datetime | None = None
    ) -> SignedRequest | None:
        """Check the request's signature and claims, all but the single use of its ``jti``; returns what
        that single use needs (``None`` when the environment takes unsigned requests). ``at``: judge the
        signature's and certificate's times as of that moment (a kept request replayed later) instead of now.

        Raises:
            Problem: the request is not authentic (reason code in ``Problem.code``).
        """
        ...

    def presented(self, headers: Mapping[str, str]) -> PresentedSignature | None:
        """The request's credential as sent (the compact JWS) and when, by the verifier's clock, to keep with a
        body that cannot be checked yet; None when there is none (or it is too long to be one)."""
        ...

    def claim(self, environment_id: str, signed: SignedRequest) -> None:
        """Record the ``jti`` of a request whose message is not recorded (no MSH-10, refused, not HL7).

        Raises:
            Problem: 401 ``signature_replayed``.
            StoreUnavailable: the replay store cannot be reached.
        """
        ...

    def replayed(self) -> Problem:
        """The answer to a replayed request."""
        ...


class IntakeService:
    """Applies SIU messages. Collaborators are injected (see ``functions/dependencies.py``)."""

    def __init__(
        self,
        *,
        environments: EnvironmentRepository,
        visits: VisitDocuments,
        contacts: ContactRepository,
        outbox: OutboxRepository,
        links: LinkRepository,
        processed: ProcessedMessages,
        rejected: RejectedMessages,
        verifier: RequestVerifier,
        clock: Clock,
        patient_id_key: bytes,
        unknown_keeps: KeepLimiter | None = None,
    ) -> None:
        self._environments = environments
        self._visits = visits
        self._contacts = contacts
        self._outbox = outbox
        self._links = links
        self._processed = processed
        self._rejected = rejected
        self._verifier = verifier
        self._clock = clock
        self._patient_id_key = patient_id_key
        self._unknown_keeps = unknown_keeps or KeepLimiter()

    def handle(
        self, environment_id: str, body: bytes, headers: Mapping[str, str], *, client: str = "unknown"
    ) -> IntakeResponse:
        """Process one request to ``POST /api/hl7/{environmentId}``; never raises for bad input.

        Args:
            environment_id: the environment of the URL.
            body: the request body, exactly as received (the signature covers these bytes).
            headers: the request headers (names in any case).
            client: the client's address (``lib.visits.throttle.client_address``): bodies for an environment
                that does not exist are kept within a per-address budget (``lib.scheduling.keep_limit``).

        Raises:
            StoreUnavailable: only while keeping a rejected message fails too (the trigger answers 503).
        """
        return self._process(environment_id, body, headers, trusted=False, client=client)

    def replay(
        self, environment_id: str, body: bytes, *, signature: str | None = None, received: datetime | None = None,
    ) -> IntakeResponse:
        """Run the intake again on a kept message, as an operator.

        A message that was authenticated when it arrived is trusted (no signature check). One that could not be
        (``received`` given: it was sent before its environment existed) must carry a ``signature`` that verifies
        with the environment's configuration now, its times judged as of ``received``; the ``jti`` is not claimed
        again (the kept record is the single use). A message rejected again is not kept a second time (the
        operator still holds the original record). Used by :func:`lib.scheduling.replay.replay_rejected`.

        Raises:
            Problem: ``received`` given and the signature does not verify (or is missing); nothing was applied.
            StoreUnavailable: as :meth:`handle`.
        """
        headers = {"x-hl7-signature": signature} if signature else {}
        return self._process(environment_id, body, headers, trusted=True, verify_at=received)

    def _process(
        self, environment_id: str, body: bytes, headers: Mapping[str, str], *, trusted: bool,
        verify_at: datetime | None = None, client: str = "unknown",
    ) -> IntakeResponse:
        keep = not trusted
        if not _ENVIRONMENT_ID.fullmatch(environment_id):
            return _problem(400, "Invalid environment ID", "The environment ID in the URL must be 1 to 64 letters, "
                            "digits, '.', '_' or '-'. Check the URL the interface sends to.")
        try:
            environment = self._environments.get(environment_id)
        except StoreUnavailable:  # e.g. a process that started while the store was unreachable
            from lib.scheduling.unavailable import store_unavailable_response

            log.warning("hl7 intake store unavailable env=%s", environment_id)
            return store_unavailable_response(body)
        except UnusableSetting as unusable:  # not even its certificate can be read: no ACK to an unchecked sender
            log.warning("hl7 refused: environment %s cannot be read (setting %s); correct it in the portal",
                        environment_id, unusable.setting)
            return _problem(503, "Environment settings unusable",
                            f"The stored settings of environment '{environment_id}' cannot be read "
                            f"({unusable.setting}); an administrator corrects them in the configuration portal, "
                            "then the interface sends again.", code="environment_settings_invalid")
        if environment is None:
            # Kept for replay once the environment exists, but nothing authenticates it yet: only a body the
            # size of a real SIU message is stored, and only so many a minute (lib/scheduling/keep_limit.py).
            keep = keep and len(body) <= UNKNOWN_ENVIRONMENT_KEEP_BYTES and self._unknown_keeps.take(client)
            rejected_id = self._keep(environment_id, None, body, "unknown environment", "207", None,
                                     headers=headers) if keep else None
            return _problem(
                404,
                "Unknown environment",
                f"No environment '{environment_id}' is configured in the connector. Check the URL the "
                "interface sends to, or add the environment in the configuration portal.",
                rejected_id,
            )
        signed: SignedRequest | None = None
        if trusted and verify_at is not None:  # never authenticated: raises Problem to the operator's replay
            self._verifier.authenticate(environment, headers, body, at=verify_at)
        try:
            if not trusted:
                signed = self._verifier.authenticate(environment, headers, body)
        except Problem as problem:
            return _refused(environment_id, problem)
        try:
            raw = unframe(body)
            decoded, header = read_message(raw)  # decoded once, handed down to the SIU reader
        except (NotHL7, HL7Rejected) as exc:
            if (refused := self._claim(environment_id, signed)) is not None:
                return refused
            reason = getattr(exc, "reason", str(exc))
            rejected_id = self._keep(environment_id, environment, body, reason, "100", None) if keep else None
            return _problem(400, "Not an HL7 v2 message", reason, rejected_id)
        if header.is_ack:
            if (refused := self._claim(environment_id, signed)) is not None:
                return refused
            # hl7.md §8: never acknowledge an acknowledgement (two engines would ACK each other forever).
            reason = "an ACK message was sent to the intake; acknowledgements are not acknowledged"
            rejected_id = self._keep(environment_id, environment, body, reason, "200", header.control_id) if keep \
                else None
            log.info("hl7 ack refused env=%s msh10=%s", environment_id, log_control_id(header.control_id))
            return _problem(
                400, "Acknowledgement sent to the intake",
                "The body is an HL7 ACK (MSH-9.1 ACK). The intake accepts SIU messages and never "
                "acknowledges an ACK; check the interface's routing.", rejected_id, code="ack_not_accepted",
            )

        if not header.sent_by_any_of(environment.hl7_sending_facilities):
            # Not kept: the binding says this feed is not ours to read (docs/hl7-intake.md, "Sending facility").
            log.warning("hl7 sending facility refused env=%s msh10=%s", environment_id,
                        log_control_id(header.control_id))
            return _problem(
                403, "Sending facility not allowed",
                "MSH-4 (sending facility) is not one this environment accepts HL7 from. Check the interface's "
                "MSH-4 or the environment's sending facilities in the configuration portal.",
                code="sending_facility_not_allowed",
            )
        try:
            return self._handle_message(environment, decoded, header, raw, body, signed, keep=keep)
        except Problem as problem:
            return _refused(environment_id, problem)
        except StoreUnavailable:
            log.warning("hl7 intake store unavailable env=%s msh10=%s", environment_id,
                        log_control_id(header.control_id))
            ack = self._ack(header, "AE", STORE_UNAVAILABLE_REASON, "207")
            return IntakeResponse(503, ack, ack_content_type(header), ack_code=_msa(ack), headers=RETRY_LATER)

    def _handle_message(
        self, environment: EnvironmentConfig, decoded: Er7Message, header: MessageHeader, raw: bytes,
        original: bytes, signed: SignedRequest | None, *, keep: bool,
    ) -> IntakeResponse:
        """Apply one message. A message with an MSH-10 is checked against, and recorded in, the processed
        messages together with its signature's ``jti`` (one round trip each, ``lib.store.messages``); any
        other request claims its ``jti`` on its own.

        Raises:
            Problem: the signature was used before (401 ``signature_replayed``).
            StoreUnavailable: the store is down (the caller answers ``AE``).
        """
        now = self._clock.now()
        partition = (self._processed.partition(processed_id(environment.id, header.sending_facility or "",
                                                            header.control_id))
                     if header.control_id else None)
        digest = hashlib.sha256(raw).hexdigest()
        if partition is not None:
            seen, previous = self._processed.check(partition, signed, digest)
            if seen == "replayed":
                raise self._verifier.replayed()
            if seen == "reused":
                return self._reused_control_id(environment, decoded, header, original, keep=keep)
            if previous is not None:
                return IntakeResponse(200, previous, ack_content_type(header), ack_code=_msa(previous))
        elif signed is not None:
            self._verifier.claim(environment.id, signed)
        try:
            _check_processing_id(environment, header)
            try:
                check_usable(environment, ignore=NOT_FOR_INTAKE)  # a setting the portal now refuses: named first
                message = siu_from_message(
                    decoded,
                    header,
                    time_zone=environment.time_zone,
                    default_region=environment.default_region,
                    appointment_id_order=environment.appointment_id_order,
                    conference_id_field=environment.conference_id_field,
                )
            except UnusableSetting as problem:  # not the message's fault, and not retryable until fixed
                log.warning("hl7 refused: environment %s has unusable settings (%s); correct them in the portal",
                            environment.id, ", ".join(p.setting for p in problem.problems))
                raise HL7Rejected(problem.reason, "207") from None  # MSA-3 holds 80 chars, ERR the rest
            check_visit_window(message, now)
            sent_at = message_time(header, environment.time_zone, now)
        except HL7Rejected as rejected:
            return self._refuse(environment, decoded, header, original, signed, rejected, keep=keep)

        if message.offset_disagreement:
            log.warning("hl7 time offset disagrees with the environment zone env=%s msh10=%s %s",
                        environment.id, log_control_id(header.control_id), message.offset_disagreement)
        if message.language_note:
            log.info("hl7 %s: texts use the default language env=%s msh10=%s", message.language_note,
                     environment.id, log_control_id(header.control_id))
        key = order_key(sent_at.earliest, header.control_id or "", latest=sent_at.latest)
        identity = MessageIdentity.of(header.sending_facility, header.separators.component,
                                      message.patient_identifiers, self._patient_id_key)
        applied, to_send, link = self._apply(environment, message, key, partition, identity)
        if applied.conflict is not None:
            # Another sender's or another patient's visit under the same appointment ID: never taken over.
            log.warning("hl7 visit identity conflict env=%s msh10=%s event=%s conflict=%s: the message names a "
                        "visit booked for another %s; refused", environment.id, log_control_id(header.control_id),
                        message.event, applied.conflict.kind, applied.conflict.kind)
            field = ("PID", 3) if applied.conflict.kind == "patient" else _ID_FIELD[message.appointment_id_source]
            return self._refuse(environment, decoded, header, original, signed, HL7Rejected(
                applied.conflict.reason, "205", segment=field[0], field=field[1]), keep=keep)
        _report(environment, header, message, applied)
        ack = self._ack(header, "AA", None, None)  # CA when the sender asked for enhanced mode
        if partition is not None and not self._processed.record(
            partition, signed, ack, code=_msa(ack) or "AA", now=now, body_sha256=digest, link=link
        ):
            # The same signed request, replayed at the same moment, was recorded first; what both applied is
            # the same message (idempotent), and only the first is answered AA.
            raise self._verifier.replayed()
        log.info(
            "hl7 accepted env=%s msh10=%s event=%s outcome=%s texts=%d",
            environment.id, log_control_id(header.control_id), header.trigger_event, applied.outcome, len(to_send),
        )
        changed = appointment_key(environment.id, applied.after.appointment_id) if applied.after else None
        return IntakeResponse(200, ack, ack_content_type(header), ack_code=_msa(ack), outbox_to_send=to_send,
                              changed_appointment=changed if applied.outcome != "stale" else None)

    def _refuse(
        self, environment: EnvironmentConfig, decoded: Er7Message, header: MessageHeader, original: bytes,
        signed: SignedRequest | None, rejected: HL7Rejected, *, keep: bool,
    ) -> IntakeResponse:
        """Answer a message that will not be applied: ``AR`` with the reason, kept for replay (tied to its visit),
        its signature's ``jti`` claimed (a refused message is not recorded as processed)."""
        if header.control_id and signed is not None:
            self._verifier.claim(environment.id, signed)
        rejected_id = self._keep_rejected(environment, decoded, header, original, rejected) if keep else None
        log.info(
            "hl7 rejected env=%s msh10=%s code=%s err=%s rejected_id=%s",
            environment.id, log_control_id(header.control_id), rejected.ack_code, rejected.err_code, rejected_id,
        )
        ack = self._ack(header, rejected.ack_code, rejected.reason, rejected.err_code, rejected.location)
        return IntakeResponse(200, ack, ack_content_type(header), ack_code=_msa(ack), rejected_id=rejected_id)

    def _reused_control_id(
        self, environment: EnvironmentConfig, decoded: Er7Message, header: MessageHeader, original: bytes,
        *, keep: bool,
    ) -> IntakeResponse:
        """MSH-10 already used by this sender for a different body: AR, kept for the operator, and counted
        (``vv.hl7.control_id_reused``, an alert's signal: the sender's control IDs are not unique)."""
        reason = (
            f"MSH-10 {header.control_id[:40]!r} was already used by this sender for a different message; "
            "nothing was applied: send it again with a new MSH-10"
        )
        rejected = HL7Rejected(reason, "205", segment="MSH", field=10)
        rejected_id = self._keep_rejected(environment, decoded, header, original, rejected) if keep else None
        metrics.hl7_control_id_reused(environment.id)
        log.warning("hl7 control id reused with a different body env=%s msh10=%s rejected_id=%s",
                    environment.id, log_control_id(header.control_id), rejected_id)
        ack = self._ack(header, rejected.ack_code, rejected.reason, rejected.err_code, rejected.location)
        return IntakeResponse(200, ack, ack_content_type(header), ack_code=_msa(ack), rejected_id=rejected_id)

    def _keep_rejected(
        self, environment: EnvironmentConfig, decoded: Er7Message, header: MessageHeader, original: bytes,
        rejected: HL7Rejected,
    ) -> str:
        """Keep a refused message for replay, tied to its visit when that can be read (purged with it)."""
        return self._keep(environment.id, environment, original, rejected.reason, rejected.err_code,
                          header.control_id)

    def _apply(
        self, environment: EnvironmentConfig, message: SiuMessage, key: str, partition: str | None,
        identity: MessageIdentity,
    ) -> tuple[Applied, tuple[str, ...], dict[str, object] | None]:
        """Apply ``message`` (recorded in ``partition``, ``None`` without an MSH-10) to its visit; returns what
        it did, the IDs of the texts due now, and the join link to record with the message.

        The visit's documents (appointment, phone number, new texts) go in one write
        (:meth:`lib.store.visits.VisitDocuments.write`, a transactional batch). A visit this message books
        takes ``partition`` as its link ID, and its join link is recorded with the message afterwards (one
        batch, :meth:`lib.store.messages.ProcessedMessages.record`); any other visit's link is written
        beside the batch, concurrently (a link whose batch failed points at nothing it can open).
        """
        now = self._clock.now()
        doc_key = appointment_key(environment.id, message.appointment_id)
        # A new booking (S12) is written without reading first: the create fails when the appointment exists
        # (a resend, a launch that opened it, a racing message), and the next round reads it and decides again.
        optimistic = message.event == "S12"
        for _ in range(5):
            existing, stored_phone = (None, None) if optimistic else self._visits.read(doc_key, now=now)
            if existing is None and not optimistic:
                # Named by another of its IDs (booked by SCH-1, now named by SCH-2 and SCH-1): that visit.
                found = self._visit_by_other_id(environment, message, identity, now=now)
                if found is not None:
                    existing, stored_phone = found
                    doc_key = existing.key
            optimistic = False
            applied = apply_message(existing, message, environment_id=environment.id, key=key, now=now,
                                    new_link_id=partition, identity=identity,
                                    bound_facilities=environment.hl7_sending_facilities)
            if applied.outcome in ("stale", "conflict") or applied.after is None:
                return applied, (), None
            after = applied.after
            phone = keeps_phone(after, message)
            if applied.outcome == "redelivered":
                # This very message was applied before, and the intake may have stopped after that write (a
                # store error, a lost answer, or the one-by-one fallback interrupted): the texts it planned were
                # stored with the appointment and are created now (once each: their IDs are deterministic).
                # Nothing is planned anew.
                create = tuple(OutboxItem.from_doc(doc) for doc in after.planned_outbox)
                cancel = plan_texts(environment.sms, after, after, has_phone=False, now=now).cancel
            else:
                # A stored number still counts for planning (a cancellation notice uses it) unless the sender
                # nulled it or the visit is over.
                has_phone = phone is not None or (
                    existing is not None and not message.phone_cleared and after.ttl is None
                    and stored_phone is not None
                )
                # A visit first recorded by a launch (no HL7 message applied yet) is announced to the patient
                # like a new booking when its first SIU arrives.
                announced = applied.before if applied.before is not None and applied.before.order_key else None
                plan = plan_texts(
                    environment.sms, announced, after, has_phone=has_phone, now=now, time_zone=environment.time_zone
                )
                create, cancel = plan.create, plan.cancel
                refs = {r["id"]: r for r in after.outbox_refs}
                for item in create:
                    refs[item.id] = {"id": item.id, "bucket": item.bucket}
                after = dataclasses.replace(after, outbox_refs=list(refs.values()),
                                            planned_outbox=[item.to_doc() for item in create])
            forget_phone = forgets_phone(after, message)
            # A cancellation text planned now, or planned by an earlier delivery of this message (a resend must
            # not take the number from a notice still waiting to go).
            notice = any(item.kind == "cancelled" for item in create) or any(
                ref["id"].rsplit("|", 2)[-2:-1] == ["cancelled"] for ref in after.outbox_refs
            )
            phone_doc = self._phone_document(environment, after, phone, stored_phone if forget_phone and notice
                                             else None, now)
            link = self._join_link(after, now)
            recorded_link = link if link is not None and after.link_id == partition else None
            beside = (None if link is None or recorded_link is not None
                      else _beside().submit(self._links.put_document, link))
            try:
                written = self._visits.write(
                    doc_key, appointment=None if applied.outcome == "redelivered" else after,
                    create=existing is None, phone=phone_doc, texts=create,
                )
            except (ConcurrencyConflict, AlreadyExists):
                _wait(beside)
                continue  # another message for the same appointment won the race: decide again
            except BaseException:
                _wait(beside)
                raise
            _wait(beside, reraise=True)
            if forget_phone:
                # Cancelled, deleted, no-show, over, or the sender nulled PID-13/14: the number goes now, with every
                # kept copy of the visit's refused messages (which may carry it too). Only a cancellation notice
                # about to be sent keeps it (rewritten above), until that text is done (the dispatcher deletes it)
                # and at most CANCEL_NOTICE_WINDOW (the purge timer's deadline).
                if phone_doc is None:
                    self._contacts.delete(doc_key)
                self._rejected.delete_for_appointment(environment.id, doc_key)
            self._skip_superseded(cancel)
            to_send = tuple(item.id for item in written.texts if item.state == "pending" and item.due_utc <= now)
            return applied, to_send, recorded_link
        raise StoreUnavailable("appointment kept changing under concurrent updates")

    def _visit_by_other_id(
        self, environment: EnvironmentConfig, message: SiuMessage, identity: MessageIdentity, *, now: datetime,
    ) -> tuple[Appointment, str | None] | None:
        """The stored visit (and its number) that the message names by another of its appointment IDs, when no
        visit has the ID it is keyed by: a visit booked with SCH-1 alone and later named with SCH-2 and SCH-1.

        The IDs are tried in the environment's ``appointment_id_order``; a visit found is this message's only when
        it recorded no different value for an ID field both carry (``Appointment.other_ids``) and its sender and
        patient agree (:mod:`lib.scheduling.visit_identity`). One that disagrees is another appointment: logged
        (a cancel then leaves a tombstone under its own ID while that visit stays booked), never changed.
        """
        named = {"SCH-2": message.filler_id, "SCH-1": message.placer_id, "PV1-19": message.visit_number}
        for source in environment.appointment_id_order:
            value = named.get(source)
            if not value or value == message.appointment_id:
                continue
            visit, phone = self._visits.read(appointment_key(environment.id, value), now=now)
            if visit is None:
                continue
            differ = sorted(field for field, mine in named.items()
                            if mine and visit.other_ids.get(field) not in (None, mine))
            conflict = identity_conflict(visit, identity, bound_facilities=environment.hl7_sending_facilities)
            if not differ and conflict is None:
                return visit, phone
            log.warning("hl7 message names no stored visit by %s, and its %s names a stored %s visit that %s; "
                        "not applied to that visit env=%s msh10=%s event=%s", message.appointment_id_source, source,
                        visit.status, f"recorded another {', '.join(differ)}" if differ else
                        f"belongs to another {conflict.kind if conflict else ''}", environment.id,
                        log_control_id(message.header.control_id), message.event)
        return None

    def _phone_document(
        self, environment: EnvironmentConfig, after: Appointment, phone: str | None, notice_phone: str | None,
        now: datetime,
    ) -> dict[str, object] | None:
        """The phone document to write with the appointment, or ``None``: the message's number until the visit's
        end plus the environment's grace period (SMS settings), or a kept number (``notice_phone``) only for a
        cancellation notice, for at most CANCEL_NOTICE_WINDOW. Nothing personal is kept for a visit that is
        already over (a late or replayed message)."""
        if notice_phone is not None:
            return phone_document(after.key, environment.id, notice_phone, delete_after=now + CANCEL_NOTICE_WINDOW,
                                  now=now)
        end = after.end_utc or after.start_utc
        phone_grace = timedelta(minutes=environment.sms.phone_grace_minutes)
        if phone is None or end is None or not after.link_id or end + phone_grace <= now:
            return None
        return phone_document(after.key, environment.id, phone, delete_after=end + phone_grace, now=now)

    @staticmethod
    def _join_link(after: Appointment, now: datetime) -> dict[str, object] | None:
        """The join-link document of ``after`` (it lives until CONTACT_GRACE after the visit's end, when its
        token expires); ``None`` when the visit is over or has no link."""
        end = after.end_utc or after.start_utc
        if end is None or not after.link_id or end + CONTACT_GRACE <= now:
            return None
        return link_document(after.link_id, after.key, expires=end + CONTACT_GRACE, now=now)

    def _skip_superseded(self, cancel: tuple[dict[str, str], ...]) -> None:
        """Move the still-pending texts of ``cancel`` (superseded revision, visit no longer booked) to skipped."""
        for ref in cancel:
            item = self._outbox.get(ref["id"])
            if item is not None and item.state == "pending":
                try:
                    self._outbox.transition(item, state="skipped", reason="superseded or cancelled")
                except ConcurrencyConflict:
                    pass  # a dispatcher claimed it; it re-checks the appointment before sending

    def _claim(self, environment_id: str, signed: SignedRequest | None) -> IntakeResponse | None:
        """Claim the ``jti`` of a request whose message will not be recorded; the answer when refused."""
        if signed is None:
            return None
        try:
            self._verifier.claim(environment_id, signed)
        except Problem as problem:
            return _refused(environment_id, problem)
        except StoreUnavailable:
            log.warning("hl7 intake replay store unavailable env=%s", environment_id)
            return _problem(503, "Store unavailable", "The connector cannot reach its store; send again later.",
                            headers=RETRY_LATER)
        return None

    def _keep(
        self, environment_id: str, environment: EnvironmentConfig | None, body: bytes, reason: str, err_code: str,
        control_id: str | None, *, headers: Mapping[str, str] | None = None,
    ) -> str:
        """Keep a refused body for the operator, tied to its visit and kept no longer than the rules of
        :mod:`lib.scheduling.refused_keep` allow. A body for an environment that does not exist (``environment``
        None) was not authenticated: its signature is kept with it, to be checked when it is replayed
        (:mod:`lib.scheduling.replay`); any other was authenticated (or the environment takes unsigned requests)."""
        now = self._clock.now()
        terms = keep_terms(environment_id, environment, body, now,
                           stored=self._stored_appointment if environment is not None else None)
        signature = None
        if environment is None:
            authentication, signature = "unverified", self._verifier.presented(headers or {})
        else:
            authentication = "not-required" if environment.hl7_auth == "none" else "verified"
        return self._rejected.add(
            environment_id, body, reason=reason, err_code=err_code, control_id=control_id, now=now,
            delete_after=terms.delete_after, appointment_key=terms.appointment_key, authentication=authentication,
            signature=signature.token if signature else None, signature_received=signature.received if signature
            else None,
        )

    def _stored_appointment(self, key: str) -> Appointment | None:
        """The stored appointment of a refused message's visit (one read, only on the refusal path), or None
        when there is none or the store cannot say (the message alone then decides how long it is kept)."""
        try:
            return self._visits.read(key, now=self._clock.now())[0]
        except StoreError:
            return None

    def _ack(
        self, header: MessageHeader, code: str, reason: str | None, err_code: str | None, location: str | None = None
    ) -> bytes:
        return build_ack(
            header,
            code=code,
            reason=reason,
            err_code=err_code,
            now=self._clock.now(),
            control_id=uuid.uuid4().hex[:20],
            error_location=location,
        )


@functools.cache
def _beside() -> ThreadPoolExecutor:
    """The threads that write another visit's join link while the batch is in flight (one pool per process)."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="intake-link")


def _wait(write: Future[None] | None, *, reraise: bool = False) -> None:
    """Wait for a write started beside the batch; its error is raised only with ``reraise`` (otherwise the
    batch's own outcome is what the caller acts on, and the resend writes the link again)."""
    if write is None:
        return
    try:
        write.result()
    except Exception:
        if reraise:
            raise


def _check_processing_id(environment: EnvironmentConfig, header: MessageHeader) -> None:
    expected = "P" if environment.kind == "production" else "T"
    actual = (header.processing_id or "").upper()[:1]
    if actual and actual in "PT" and actual != expected:
        raise HL7Rejected(
            f"MSH-11 processing ID '{actual}' does not match this {environment.kind} environment "
            f"(expected '{expected}'): a test feed is pointed at production or the reverse",
            err_code="202",
            location="MSH^1^11",
        )


def _report(environment: EnvironmentConfig, header: MessageHeader, message: SiuMessage, applied: Applied) -> None:
    """Make the accepted messages that changed less than they say visible (no PHI: IDs, events, statuses).

    A stale message (older than what the visit applied) is answered ``AA``, since it was received, but is
    counted (``vv.hl7.stale``) and logged; a stale S15/S17/S26 for a visit that stays booked is a warning
    (the "HL7 cancel ignored" alert). An S13/S14 that changed a cancelled, deleted or no-show visit without
    booking it again is logged with SCH-25 as sent (a filler status saying "booked" there means the sender
    expects a reinstatement, which SIU does only with a new S12).
    """
    stored = applied.before.status if applied.before is not None else None
    if applied.outcome == "stale":
        metrics.hl7_stale(environment.id, message.event, stored)
        level = logging.WARNING if message.status != "booked" and stored == "booked" else logging.INFO
        log.log(level, "hl7 stale message not applied env=%s msh10=%s event=%s visit_status=%s: a newer message "
                "for this visit was applied before it", environment.id, log_control_id(header.control_id),
                message.event, stored)
    elif applied.outcome == "created" and message.status != "booked":
        log.info("hl7 %s for a visit not stored before: kept as a tombstone env=%s msh10=%s id_field=%s",
                 message.event, environment.id, log_control_id(header.control_id), message.appointment_id_source)
    elif applied.kept_ended:
        log.info("hl7 change to an ended visit stored without booking it again env=%s msh10=%s event=%s "
                 "visit_status=%s sch25=%s", environment.id, log_control_id(header.control_id), message.event,
                 stored, metrics.bounded_token(message.filler_status_hint))


def _msa(ack: bytes) -> str | None:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA"):
            return segment[4:6].decode("ascii", "replace")
    return None


def _refused(environment_id: str, problem: Problem) -> IntakeResponse:
    log.info("hl7 request refused env=%s status=%d code=%s", environment_id, problem.status, problem.code)
    return _problem(problem.status, problem.title, problem.detail, code=problem.code, headers=problem.headers)


def _problem(
    status: int,
    title: str,
    detail: str,
    rejected_id: str | None = None,
    *,
    code: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> IntakeResponse:
    """An RFC 9457 problem response; ``code`` (a reason code) goes into the document as ``code``."""
    import json

    doc: dict[str, object] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if code:
        doc["code"] = code
    if rejected_id:
        doc["rejectedMessageId"] = rejected_id
    return IntakeResponse(
        status, json.dumps(doc).encode(), "application/problem+json", rejected_id=rejected_id, headers=headers
    )
