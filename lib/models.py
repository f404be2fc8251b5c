"""Domain records shared by the services, with their Cosmos document shapes.

Times are aware UTC datetimes inside the program and ISO-8601 strings with ``+00:00`` in documents.
No record holds a patient name or clinical data; the phone number lives only in :class:`Contact`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from lib.field_rules import (
    AppointmentIdOrder,
    DisplayName,
    EncryptedMaxAge,
    Flag,
    FrameOrigins,
    GraceMinutes,
    HorizonMinutes,
    PerNumberCap,
    ReminderMinutes,
    SendingFacilities,
    SmsRate,
    TimeZoneName,
    VendorName,
    VisitsPerMonth,
    WindowHours,
    sending_facilities_problem,
)

EnvironmentKind = Literal["test", "production"]
Hl7Auth = Literal["jws", "none"]
LaunchMode = Literal["smart", "encrypted"]
#: Who skips a visit meeting's lobby (Graph ``lobbyBypassSettings.scope``; docs/launch.md "Lobby"). Anonymous
#: guests (the patient) wait in every one of them; ``organizationExcludingGuests`` also keeps the tenant's Entra
#: guests there, ``organizer`` everyone but the organizer.
LobbyScope = Literal["organization", "organizer", "organizationExcludingGuests", "organizationAndFederated"]
PresenceSource = Literal["auto", "notifications", "attendance_report"]
ClientAssertionAlg = Literal["RS384", "ES384"]
AppointmentStatus = Literal["booked", "cancelled", "deleted", "noshow"]
SmsKind = Literal["booked", "changed", "cancelled", "reminder"]
OutboxState = Literal["pending", "sending", "sent", "failed", "blocked", "skipped", "unknown"]
ReviewStatus = Literal["approved", "sent_back"]

#: Epic's CSN identifier system ends with this OID suffix below the organization's root
#: ``urn:oid:1.2.840.114350.1.13.<org>.<env>`` (docs/launch.md "CSN identifier").
EPIC_CSN_OID_SUFFIX = ".7.3.698084.8"

#: ``ConnectionStatus`` codes sent to Epic by default (Epic's value list is not public: a customer's Epic TS
#: confirms or overrides them per environment in ``EnvironmentConfig.writeback_status_codes``).
DEFAULT_WRITEBACK_STATUS_CODES: dict[str, str] = {"connected": "1", "disconnected": "2", "device_test_passed": "3",
                                                  "device_test_failed": "4"}
DEFAULT_WRITEBACK_HORIZON_MINUTES = 1440
#: Bounds of ``writeback_retry_horizon_minutes``: 5 minutes .. 7 days (Azure Queue's longest visibility timeout).
WRITEBACK_HORIZON_BOUNDS = (5, 7 * 1440)
_STATUS_CODE = re.compile(r"[A-Za-z0-9_-]{1,16}")

#: Terminal statuses: no reminder is sent for an appointment in one of them.
ENDED_STATUSES: frozenset[str] = frozenset({"cancelled", "deleted", "noshow"})


def iso(at: datetime | None) -> str | None:
    """Format an aware datetime as ISO-8601 UTC, or ``None``."""
    return at.astimezone(UTC).isoformat() if at else None


def parse_iso(text: str | None) -> datetime | None:
    """Parse what :func:`iso` wrote; ``None`` stays ``None``."""
    return datetime.fromisoformat(text) if text else None


#: Characters a Cosmos DB item ``id`` may not contain (the id is part of the resource URL).
COSMOS_ID_FORBIDDEN = frozenset("/\\?#")
#: Longest appointment key used as is: Cosmos ids are limited to 255 characters (1,023 bytes in newer
#: service versions); keys derived from it (``{key}|{kind}|{revision}`` outbox IDs) need room too.
MAX_PLAIN_KEY_CHARS = 200
#: Longest Cosmos ``ttl`` (seconds): a signed 32-bit integer; the service refuses a larger value.
MAX_COSMOS_TTL = 2_147_483_647


def cosmos_ttl(seconds: float, *, minimum: int = 60) -> int:
    """A ``ttl`` Cosmos DB accepts: at least ``minimum`` seconds, at most :data:`MAX_COSMOS_TTL` (68 years)."""
    return int(min(MAX_COSMOS_TTL, max(minimum, seconds)))


def safe_key(*parts: str) -> str:
    """A Cosmos item id for ``parts`` joined by ``|``: the joined text when it is usable as an id, else
    ``{parts[0]}|~{sha256 of the joined text}`` (docs/hl7-intake.md, "Safe keys").

    Usable means: at most :data:`MAX_PLAIN_KEY_CHARS` characters, printable, none of ``/ \\ ? #``, and no
    part after the first starting with ``~`` (which keeps the two forms from ever colliding). The first part
    (an environment ID, already restricted to letters, digits, ``._-``) stays readable in both forms.
    """
    joined = "|".join(parts)
    if (
        len(joined) <= MAX_PLAIN_KEY_CHARS
        and joined.isprintable()
        and not COSMOS_ID_FORBIDDEN.intersection(joined)
        and not any(part.startswith("~") for part in parts[1:])
    ):
        return joined
    digest = hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{parts[0][:64]}|~{digest}"


def appointment_key(environment_id: str, appointment_id: str) -> str:
    """The document ID of an appointment: ``{environmentId}|{appointmentId}``, or its hashed safe form when
    the appointment ID cannot be part of a Cosmos id (:func:`safe_key`)."""
    return safe_key(environment_id, appointment_id)


def writeback_settings_problems(status_codes: object, horizon_minutes: object) -> list[str]:
    """What is wrong with an environment's write-back settings (empty when they are fine), one plain sentence
    per problem, for the portal's error summary and for the settings check before use.

    ``status_codes`` must map event types of :data:`DEFAULT_WRITEBACK_STATUS_CODES` to codes of 1-16 letters,
    digits, ``_`` or ``-``; ``horizon_minutes`` must be a whole number within :data:`WRITEBACK_HORIZON_BOUNDS`.
    """
    problems: list[str] = []
    if not isinstance(status_codes, dict):
        problems.append("Write-back status codes must map event types to codes.")
    else:
        for event_type, code in status_codes.items():
            if event_type not in DEFAULT_WRITEBACK_STATUS_CODES:
                problems.append(f"Write-back status codes: unknown event type '{str(event_type)[:40]}' (use "
                                f"{', '.join(DEFAULT_WRITEBACK_STATUS_CODES)}).")
            elif not isinstance(code, str) or not _STATUS_CODE.fullmatch(code):
                problems.append(f"Write-back status code for '{event_type}' must be 1-16 letters or digits.")
    low, high = WRITEBACK_HORIZON_BOUNDS
    if isinstance(horizon_minutes, bool) or not isinstance(horizon_minutes, int) or not low <= horizon_minutes <= high:
        problems.append(f"Write-back retry horizon must be a whole number of minutes from {low} to {high}.")
    return problems


@dataclass(frozen=True)
class SmsSettings:
    """SMS settings of one environment (issue: SMS confirmations and reminders).

    Checked when configured with :func:`lib.sms.configuration.validate_sms_settings`.

    Attributes:
        enabled: SMS on or off for the environment.
        sender: our E.164 number (toll-free, short code or 10DLC) that texts come from and replies reach.
        confirm_booked, confirm_changed, confirm_cancelled: confirmation texts on S12 / time change / S15-S17.
        reminder_offsets_minutes: minutes before the start; "24 h before" means 1440 elapsed minutes (UTC),
            so across a DST change the reminder's local wall-clock time differs from the visit's by an hour.
        quiet_hours: local ``(start, end)`` ``HH:MM`` in the patient's zone (the environment's zone); no
            reminder is sent strictly after ``start`` or strictly before ``end`` (47 CFR 64.1200(c)(1) wording:
            "before 8 a.m. or after 9 p.m."). A reminder falling inside is moved earlier to ``start`` of that
            night, or dropped when that moment is already past at planning time.
        join_link_base_url: branded HTTPS origin of join links (no public URL shortener); ``None`` =
            ``PUBLIC_BASE_URL``.
        default_language: template language when PID-15 names none we have.
        templates: per-language overrides ``{"en": {"booked": "...{org}...{when}...{link}..."}}``; kinds
            ``booked``, ``changed``, ``cancelled``, ``reminder``, ``help``; placeholders ``{org}``, ``{when}``,
            ``{link}``. Missing entries fall back to the shipped templates.
        rate_per_minute: most texts a minute from ``sender`` (ACS: toll-free 200, short code 6000).
        phone_grace_minutes: the phone number is deleted this long after the visit's end.
        help_contact: the support contact a HELP reply gives (a phone number or web page of the organization);
            ``None`` = the join links' site.
        per_number_cap, per_number_window_hours: at most ``per_number_cap`` texts to one number from
            ``sender`` in any ``per_number_window_hours`` (several visits in a few days); cancellations are
            always sent. 0 = no cap.
        reachable_countries: ISO 3166-1 regions ``sender`` can text (a US toll-free number reaches US and CA
            numbers, not a UK mobile); empty = the sender number's own region only. Other numbers are not
            texted and the reason is recorded.
        consented_by, consented_at: who gave the two SMS consents in the portal, and when (ISO UTC): we send on
            the organization's behalf, and its patients agreed to receive texts. SMS cannot be on without them.
    """

    enabled: Flag = False
    sender: str | None = None
    confirm_booked: Flag = True
    confirm_changed: Flag = True
    confirm_cancelled: Flag = True
    reminder_offsets_minutes: tuple[ReminderMinutes, ...] = (1440, 60)
    quiet_hours: tuple[str, str] = ("21:00", "08:00")
    join_link_base_url: str | None = None
    default_language: str = "en"
    templates: dict[str, dict[str, str]] = field(default_factory=dict)
    rate_per_minute: SmsRate = 200
    phone_grace_minutes: GraceMinutes = 120
    reachable_countries: tuple[str, ...] = ()
    help_contact: str | None = None
    per_number_cap: PerNumberCap = 6
    per_number_window_hours: WindowHours = 72
    consented_by: str | None = None
    consented_at: str | None = None


@dataclass(frozen=True)
class UrlReview:
    """The Epic analyst's decision on one FHIR base URL (configuration portal, docs/portal.md "Approval").

    Attributes:
        status: ``approved`` (the analyst signed in to Epic through a SMART standalone launch against the URL)
            or ``sent_back`` (with ``comment``).
        by_id: the analyst's Entra object ID; ``by_name`` their sign-in name.
        at: when (ISO-8601 UTC).
        fingerprint: :meth:`EnvironmentConfig.approval_fingerprint` of the URL when decided; a later change to
            the URL's registration (kind, client ID) makes it differ, and the URL is unapproved again.
        fhir_user: the ``fhirUser`` of the analyst's Epic sign-in (approvals only); nothing else from Epic.
        comment: why it was sent back.
    """

    status: ReviewStatus
    by_id: str
    by_name: str
    at: str
    fingerprint: str
    fhir_user: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class EnvironmentConfig:
    """One Epic environment (test or production) of the hospital, as the admin configured it.

    Attributes:
        id: environment ID used in URLs (``/api/hl7/{id}``).
        kind: ``test`` or ``production``; HL7 MSH-11 T/P must match.
        display_name: organization name shown in texts and pages.
        fhir_base_urls: approved FHIR base URLs (SMART ``iss`` values), compared exactly.
        approved: whether the Epic analyst approved the configuration.
        epic_client_id: our client ID registered in this Epic environment.
        time_zone: IANA zone for HL7 times without an offset and for texts.
        default_region: ISO 3166 region for phone numbers without a country code.
        appointment_id_order: which HL7 fields give the appointment ID, in order of preference.
        fallback_organizer_id: Entra object ID that organizes meetings when the provider has none.
        writeback_vendor_name: ``VendorName`` sent to ``SetExternalConnectionStatus``.
        sms: the SMS settings.
        hl7_auth: how ``POST /api/hl7/{id}`` requests are authenticated: ``jws`` (default: a JWS signed
            by the hospital and verified with ``hl7_certificates``, docs/hl7-intake.md) or ``none``
            (unsigned; local demo and tests only, refused for production environments).
        hl7_certificates: the hospital's uploaded X.509 certificates (.cer: PEM text or base64 DER), one
            or two (two during a key rotation); the signature must verify with one that is valid now.
        conference_id_field: where the group-visit conference ID is carried, ``SEG-n`` or ``SEG-n.c``
            (e.g. ``SCH-4``, ``ZCH-3.1``); ``None`` (default) = no conference IDs.
        department_organizers: Epic department ID -> Entra object ID of that department's fallback
            organizer (checked before ``fallback_organizer_id``; docs/launch.md "Organizer").
        provider_signin: whether a clinician's first provider launch runs the one-time Microsoft 365 sign-in
            that maps the EHR user ID to an Entra object ID (the clinician then organizes the meetings).
        client_assertion_alg: JWS algorithm of our ``private_key_jwt`` assertions, ``RS384`` or ``ES384``.
        launch_mode: ``smart`` (SMART EHR launch, ``iss`` + ``launch``) or ``encrypted`` (Epic's encrypted
            link, ``env`` + ``data``; key in ``EPIC_CAL_KEYS``; format in docs/launch.md).
        encrypted_fields: overrides of the encrypted payload's field names (logical name -> name Epic sends).
        encrypted_max_age_seconds: how old an encrypted link's timestamp may be (clock skew: 60 s ahead).
        writeback_status_codes: overrides of the ``ConnectionStatus`` codes sent to Epic, per event
            (``connected``, ``disconnected``, ``device_test_passed``, ``device_test_failed``); missing
            entries use :data:`DEFAULT_WRITEBACK_STATUS_CODES` (docs/writeback.md). Checked by
            :func:`writeback_settings_problems`.
        writeback_retry_horizon_minutes: how long transient Epic failures (429, 5xx, time-outs) are
            retried, counted from an event's first attempt, before it is marked ``failed`` (default a day;
            5 minutes to 7 days, the queue's longest visibility timeout).
        frame_origins: the Epic origins (``https://host[:port]``) allowed to show the launch and join pages
            inside a frame (Hyperspace's browser, Haiku/Canto web views, MyChart); empty = top-level only.
            Checked with :func:`lib.visits.framing.frame_origin_problem`; docs/launch.md "Embedded in Epic".
        monthly_visit_allocation: virtual visits the organization has per calendar month (its licences);
            the visits report marks each completed visit within it or not (``None``: not tracked).
        report_clinician_names: whether reports keep and show clinicians' display names (from the meeting
            roster); off by default: clinicians are shown by EHR user ID only.
        lobby_bypass_scope: who skips the lobby of this environment's visit meetings (:data:`LobbyScope`);
            meetings made under another setting are updated at their next launch or join.
        presence_source: where meeting presence comes from (docs/presence.md): ``auto`` (default: call-event
            subscriptions and the call record; a visit whose tenant refuses both as not permitted falls back to
            the meeting's attendance report), ``notifications`` (subscriptions and call record only, never the
            report) or ``attendance_report`` (only the report, read after the meeting; nothing live).
        disabled: switched off in the portal: no launch is accepted (the configuration is kept).
        csn_identifier_systems: which ``Appointment.identifier`` systems carry the CSN: an entry starting with
            ``.`` is an OID suffix below Epic's root ``urn:oid:1.2.840.114350.``, any other entry must equal the
            system exactly; tried in order (an identifier whose type text is ``CSN`` is the last resort).
        approvers: FHIR base URL -> sign-in name (UPN) of the Epic analyst who may approve it.
        approvals: FHIR base URL -> the analyst's decision (:class:`UrlReview`); a URL can be launched against
            only with a current approval (:meth:`url_approved`).

    ``approved`` is a summary kept by the portal (every URL approved); launches check :meth:`url_approved`.
        hl7_sending_facilities: MSH-4 values (sending facility) this environment accepts HL7 from; empty
            (default) = any. Each entry is a whole MSH-4 (``GHH^2.16.840.1.1^ISO``, components joined by ``^``)
            or its namespace ID alone (``GHH``), compared case-insensitively; a message from another
            facility is refused with HTTP 403 ``sending_facility_not_allowed`` (docs/hl7-intake.md).
            At most 20 entries of 1..180 printable characters without ``|``, ``~``, ``\\`` or ``&``.
    """

    id: str
    kind: EnvironmentKind
    display_name: DisplayName
    fhir_base_urls: tuple[str, ...]
    approved: Flag
    epic_client_id: str
    time_zone: TimeZoneName = "America/New_York"
    default_region: str = "US"
    appointment_id_order: AppointmentIdOrder = ("SCH-2", "SCH-1", "PV1-19")
    fallback_organizer_id: str | None = None
    writeback_vendor_name: VendorName = "OpenVirtualVisits"
    sms: SmsSettings = field(default_factory=SmsSettings)
    hl7_auth: Hl7Auth = "jws"
    hl7_certificates: tuple[str, ...] = ()
    conference_id_field: str | None = None
    department_organizers: dict[str, str] = field(default_factory=dict)
    provider_signin: Flag = True
    client_assertion_alg: ClientAssertionAlg = "RS384"
    launch_mode: LaunchMode = "smart"
    encrypted_fields: dict[str, str] = field(default_factory=dict)
    encrypted_max_age_seconds: EncryptedMaxAge = 300
    writeback_status_codes: dict[str, str] = field(default_factory=dict)
    writeback_retry_horizon_minutes: HorizonMinutes = DEFAULT_WRITEBACK_HORIZON_MINUTES
    frame_origins: FrameOrigins = ()
    monthly_visit_allocation: VisitsPerMonth | None = None
    report_clinician_names: Flag = False
    lobby_bypass_scope: LobbyScope = "organization"
    presence_source: PresenceSource = "auto"
    disabled: Flag = False
    csn_identifier_systems: tuple[str, ...] = (EPIC_CSN_OID_SUFFIX,)
    approvers: dict[str, str] = field(default_factory=dict)
    approvals: dict[str, UrlReview] = field(default_factory=dict)
    hl7_sending_facilities: SendingFacilities = ()

    def __post_init__(self) -> None:
        check_sending_facilities(self.hl7_sending_facilities)

    def status_code(self, event_type: str) -> str | None:
        """The ``ConnectionStatus`` code sent to Epic for ``event_type``, or ``None`` when it has none."""
        return self.writeback_status_codes.get(event_type) or DEFAULT_WRITEBACK_STATUS_CODES.get(event_type)

    def to_doc(self) -> dict[str, Any]:
        """The Cosmos document (container ``environments``, partition key ``/id``)."""
        return asdict(self)

    def approval_fingerprint(self, url: str) -> str:
        """What an approval of ``url`` vouches for: the environment, its kind, the URL and our Epic client ID
        (SHA-256 hex). Changing any of them after approval needs a new approval."""
        material = json.dumps([self.id, self.kind, url, self.epic_client_id], separators=(",", ":"))
        return hashlib.sha256(material.encode()).hexdigest()

    def url_approved(self, url: str) -> bool:
        """Whether ``url`` is listed and approved, unchanged since its approval."""
        review = self.approvals.get(url)
        return (url in self.fhir_base_urls and review is not None and review.status == "approved"
                and review.fingerprint == self.approval_fingerprint(url))

    def any_url_approved(self) -> bool:
        """Whether at least one listed URL is approved (the Epic client registration was proven)."""
        return any(self.url_approved(url) for url in self.fhir_base_urls)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> EnvironmentConfig:
        """Build from a stored document, ignoring Cosmos system properties (``_etag``...)."""
        sms = doc.get("sms") or {}
        sms_fields = {k: v for k, v in sms.items() if k in SmsSettings.__dataclass_fields__}
        for name in ("reminder_offsets_minutes", "quiet_hours", "reachable_countries"):
            if name in sms_fields:
                sms_fields[name] = tuple(sms_fields[name])
        if "templates" in sms_fields:
            sms_fields["templates"] = {k: dict(v) for k, v in (sms_fields["templates"] or {}).items()}
        own = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__ and k != "sms"}
        own["fhir_base_urls"] = tuple(own.get("fhir_base_urls", ()))
        if "appointment_id_order" in own:
            own["appointment_id_order"] = tuple(own["appointment_id_order"])
        if "hl7_certificates" in own:
            own["hl7_certificates"] = tuple(own["hl7_certificates"] or ())
        if "csn_identifier_systems" in own:
            own["csn_identifier_systems"] = tuple(own["csn_identifier_systems"] or ())
        if "approvals" in own:
            own["approvals"] = {url: UrlReview(**{k: v for k, v in review.items()
                                                 if k in UrlReview.__dataclass_fields__})
                                for url, review in (own["approvals"] or {}).items()}
        if "writeback_status_codes" in own:
            own["writeback_status_codes"] = dict(own["writeback_status_codes"] or {})
        if "frame_origins" in own:
            own["frame_origins"] = tuple(own["frame_origins"] or ())
        if "hl7_sending_facilities" in own:
            own["hl7_sending_facilities"] = tuple(own["hl7_sending_facilities"] or ())
        return cls(**own, sms=SmsSettings(**sms_fields))


def check_sending_facilities(values: tuple[str, ...]) -> None:
    """Validate :attr:`EnvironmentConfig.hl7_sending_facilities` (the rule is
    :func:`lib.field_rules.sending_facilities_problem`).

    Raises:
        ValueError: the rule's message, e.g. ``hl7_sending_facilities entry 2: ...``.
    """
    problem = sending_facilities_problem(values)
    if problem:
        raise ValueError(f"hl7_sending_facilities {problem}")


@dataclass
class Meeting:
    """The Teams meeting of a visit: Graph ``onlineMeeting`` id, ``joinWebUrl``, organizer, ``externalId``;
    ``start_utc``/``end_utc`` (ISO-8601) are the times Graph was last given, so a reschedule knows to PATCH;
    ``lobby_scope`` the lobby scope Graph last reported (``None``: made before it was recorded)."""

    id: str
    join_url: str
    organizer_id: str
    external_id: str
    start_utc: str | None = None
    end_utc: str | None = None
    lobby_scope: str | None = None


@dataclass
class Appointment:
    """A scheduled visit, keyed by environment + appointment ID (the CSN for Epic).

    ``order_key`` is the ordering key of the newest applied HL7 message (MSH-7 UTC ISO + ``|`` + MSH-10):
    a message sorting at or below it is stale. ``schedule_revision`` increases whenever the start time
    changes; texts are unique per (appointment, kind, revision). ``conference_id`` groups several
    appointments into one visit (group visits; from the environment's ``conference_id_field``).
    ``meeting_organizer_id`` is claimed (If-Match) before the meeting is created, so two launches racing
    to create it call ``createOrGet`` with the same organizer and get the same meeting (no orphan).
    ``planned_outbox`` holds the outbox documents that message planned, written with the appointment in one
    write: when a store failure interrupts the intake after this write, the resend of the same message
    (a redelivery, which plans nothing new) creates them from here (a transactional outbox).
    ``ttl`` (seconds, Cosmos) is set only while the visit was already over when its message arrived: such a
    visit is kept minimally and briefly (no phone, no texts); ``None`` = kept until purged otherwise.
    ``sender`` (MSH-4 namespace ID of the messages applied) and ``patient_refs`` (keyed hashes of their PID-3
    identifiers, never the identifiers) tell whether a later message is about this visit
    (:mod:`lib.scheduling.visit_identity`). ``other_ids`` holds the appointment IDs the messages gave in the
    other ID fields (``{"SCH-1": ..., "PV1-19": ...}``), so a message keyed by one of them finds this visit.
    """

    environment_id: str
    appointment_id: str
    status: AppointmentStatus
    start_utc: datetime | None
    end_utc: datetime | None
    duration_minutes: int | None
    source_time_zone: str | None
    department: str | None = None
    provider_ehr_id: str | None = None
    language: str | None = None
    order_key: str = ""
    schedule_revision: int = 0
    link_id: str | None = None
    meeting: Meeting | None = None
    sms_phone_reason: str | None = None
    outbox_refs: list[dict[str, str]] = field(default_factory=list)
    etag: str | None = None
    conference_id: str | None = None
    meeting_organizer_id: str | None = None
    planned_outbox: list[dict[str, Any]] = field(default_factory=list)
    ttl: int | None = None
    sender: str | None = None
    patient_refs: list[str] = field(default_factory=list)
    other_ids: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Document ID, and the visit's partition key (``appointmentKey``)."""
        return appointment_key(self.environment_id, self.appointment_id)

    def to_doc(self) -> dict[str, Any]:
        """The Cosmos document (container ``visits``, partition key ``/appointmentKey``, ``type``
        ``appointment``; lib/store/visits.py)."""
        return {
            "id": self.key,
            "appointmentKey": self.key,
            "type": "appointment",
            "environmentId": self.environment_id,
            "appointmentId": self.appointment_id,
            "status": self.status,
            "start_utc": iso(self.start_utc),
            "end_utc": iso(self.end_utc),
            "duration_minutes": self.duration_minutes,
            "source_time_zone": self.source_time_zone,
            "department": self.department,
            "provider_ehr_id": self.provider_ehr_id,
            "language": self.language,
            "order_key": self.order_key,
            "schedule_revision": self.schedule_revision,
            "link_id": self.link_id,
            "meeting": asdict(self.meeting) if self.meeting else None,
            "sms_phone_reason": self.sms_phone_reason,
            "outbox_refs": self.outbox_refs,
            "conference_id": self.conference_id,
            "meeting_organizer_id": self.meeting_organizer_id,
            "planned_outbox": self.planned_outbox,
            "sender": self.sender,
            "patient_refs": self.patient_refs,
            "other_ids": self.other_ids,
            **({"ttl": self.ttl} if self.ttl is not None else {}),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Appointment:
        """Build from a stored document; keeps its ``_etag`` for optimistic concurrency."""
        meeting = doc.get("meeting")
        return cls(
            environment_id=doc["environmentId"],
            appointment_id=doc["appointmentId"],
            status=doc["status"],
            start_utc=parse_iso(doc.get("start_utc")),
            end_utc=parse_iso(doc.get("end_utc")),
            duration_minutes=doc.get("duration_minutes"),
            source_time_zone=doc.get("source_time_zone"),
            department=doc.get("department"),
            provider_ehr_id=doc.get("provider_ehr_id"),
            language=doc.get("language"),
            order_key=doc.get("order_key", ""),
            schedule_revision=doc.get("schedule_revision", 0),
            link_id=doc.get("link_id"),
            meeting=Meeting(**meeting) if meeting else None,
            sms_phone_reason=doc.get("sms_phone_reason"),
            outbox_refs=list(doc.get("outbox_refs") or []),
            etag=doc.get("_etag"),
            conference_id=doc.get("conference_id"),
            meeting_organizer_id=doc.get("meeting_organizer_id"),
            planned_outbox=list(doc.get("planned_outbox") or []),
            ttl=doc.get("ttl"),
            sender=doc.get("sender"),
            patient_refs=list(doc.get("patient_refs") or []),
            other_ids=dict(doc.get("other_ids") or {}),
        )


@dataclass(frozen=True)
class OutboxItem:
    """One text to one appointment: created before sending, then moved through its states.

    ``id`` is ``{appointmentKey}|{kind}|{revision}`` (reminders add ``-{offsetMinutes}`` to the kind), so
    the same text can never be created twice. It lives in its visit's partition (container ``visits``,
    partition key ``appointmentKey``, ``type`` ``text``), so the intake creates it together with the
    appointment. ``bucket`` is the due time's UTC hour (reports group texts by it). The document never holds
    the phone number or the text itself.

    ``claimed_utc`` is when a worker moved it to ``sending`` (a ``sending`` item left behind by a crash is
    moved to ``unknown`` for review); ``segments`` the segments of the text sent; ``delivery_status``,
    ``delivery_detail`` and ``delivery_event_utc`` come from the newest ACS delivery report. ``language`` is the
    template language used and ``recipient_last2`` the last two digits of the number texted (for the texts
    report; never more of the number).

    ``repeat_id`` and ``repeat_first_sent`` are the ACS repeatable request of the current attempt, stored
    before the call; ``maybe_accepted`` is set when an attempt ended so that ACS may have taken the text
    (a 5xx), so the next attempt must repeat the same request (``lib/sms/repeatability.py``).
    """

    id: str
    bucket: str
    appointment_key: str
    environment_id: str
    kind: SmsKind
    revision: int
    due_utc: datetime
    state: OutboxState = "pending"
    attempts: int = 0
    message_id: str | None = None
    reason: str | None = None
    sent_utc: datetime | None = None
    claimed_utc: datetime | None = None
    segments: int | None = None
    delivery_status: str | None = None
    delivery_detail: str | None = None
    delivery_event_utc: datetime | None = None
    repeat_id: str | None = None
    repeat_first_sent: datetime | None = None
    maybe_accepted: bool = False
    language: str | None = None
    recipient_last2: str | None = None
    etag: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """The Cosmos document (container ``visits``, partition key ``/appointmentKey``, ``type`` ``text``)."""
        return {
            "id": self.id,
            "type": "text",
            "bucket": self.bucket,
            "appointmentKey": self.appointment_key,
            "environmentId": self.environment_id,
            "kind": self.kind,
            "revision": self.revision,
            "due_utc": iso(self.due_utc),
            "state": self.state,
            "attempts": self.attempts,
            "message_id": self.message_id,
            "reason": self.reason,
            "sent_utc": iso(self.sent_utc),
            "claimed_utc": iso(self.claimed_utc),
            "segments": self.segments,
            "delivery_status": self.delivery_status,
            "delivery_detail": self.delivery_detail,
            "delivery_event_utc": iso(self.delivery_event_utc),
            "repeat_id": self.repeat_id,
            "repeat_first_sent": iso(self.repeat_first_sent),
            "maybe_accepted": self.maybe_accepted,
            "language": self.language,
            "recipient_last2": self.recipient_last2,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> OutboxItem:
        """Build from a stored document, keeping its ``_etag``."""
        return cls(
            id=doc["id"],
            bucket=doc["bucket"],
            appointment_key=doc["appointmentKey"],
            environment_id=doc["environmentId"],
            kind=doc["kind"],
            revision=doc["revision"],
            due_utc=parse_iso(doc["due_utc"]),  # type: ignore[arg-type]
            state=doc["state"],
            attempts=doc.get("attempts", 0),
            message_id=doc.get("message_id"),
            reason=doc.get("reason"),
            sent_utc=parse_iso(doc.get("sent_utc")),
            claimed_utc=parse_iso(doc.get("claimed_utc")),
            segments=doc.get("segments"),
            delivery_status=doc.get("delivery_status"),
            delivery_detail=doc.get("delivery_detail"),
            delivery_event_utc=parse_iso(doc.get("delivery_event_utc")),
            repeat_id=doc.get("repeat_id"),
            repeat_first_sent=parse_iso(doc.get("repeat_first_sent")),
            maybe_accepted=bool(doc.get("maybe_accepted")),
            language=doc.get("language"),
            recipient_last2=doc.get("recipient_last2"),
            etag=doc.get("_etag"),
        )


def hour_bucket(at: datetime) -> str:
    """The hour a text is due, UTC, as ``YYYY-MM-DDTHH`` (``OutboxItem.bucket``; reports group by it)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H")
