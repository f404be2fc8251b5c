"""Builds the services once per process, on first use (never at import: heavy SDKs load lazily).

Every trigger asks :func:`services` for what it needs. Tests may call :func:`reset` after changing the
environment variables to get a fresh set.
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_services: Services | None = None


class Services:
    """The collaborators of the triggers, each built on first access from :class:`lib.settings.Settings`."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        from lib.observability.safe_ids import use_key
        from lib.settings import load_settings

        self.settings = load_settings(environ)
        use_key(self.settings.log_id_key)  # the MSH-10 hash in logs: keyed, the same on every instance

    def warm_up(self) -> None:
        """Build what requests use, read the store's container properties and the environments (certificates
        parsed), load the queue SDK, and run the HL7 reader once, before traffic arrives.

        Called by the ``warmup`` function (``functions/warmup.py``) when the host adds an instance; without
        it every service is still built on first use. A service that cannot be built (a missing setting) is
        logged and left to fail its own requests with its own error.
        """
        for name in ("repos", "intake", "dispatcher", "launch", "join", "acs_events", "writeback",
                     "readiness_queues"):
            try:
                getattr(self, name)
            except Exception as exc:  # warm-up is best effort; the request path reports it
                log.warning("warm-up could not build %s: %s", name, type(exc).__name__)
        try:
            self.store.warm_up()
            from lib.scheduling.signature import prepare_certificates
            from lib.stored_settings import unusable_settings

            for environment in self.repos.environments.preload():  # cached, with their certificates parsed
                prepare_certificates(environment)
                unusable = unusable_settings(environment)  # checked once now, not on the first request
                if unusable:
                    log.warning("environment %s has unusable settings (%s): its readers refuse it until they are "
                                "corrected in the portal", environment.id, ", ".join(p.setting for p in unusable))
        except Exception as exc:  # the store may be down at start; requests answer 503 then
            log.warning("warm-up could not read the store: %s", type(exc).__name__)
        # The queue clients are built now; no queue is contacted (a hanging queue service must not hold the
        # start, and lib.queues fails fast on its own when it is down).
        from lib.queues import CALL_RECORDS_QUEUE, LAUNCH_FOLLOWUP_QUEUE, SMS_OUTBOX_QUEUE, VISIT_EVENTS_QUEUE
        from lib.reports.inputs import REPORT_UPDATES_QUEUE

        try:
            self.queues.prepare(SMS_OUTBOX_QUEUE, REPORT_UPDATES_QUEUE, VISIT_EVENTS_QUEUE, LAUNCH_FOLLOWUP_QUEUE,
                                CALL_RECORDS_QUEUE)
        except Exception as exc:  # no queue storage configured: its senders report it
            log.warning("warm-up could not prepare the queues: %s", type(exc).__name__)
        import lib.scheduling.unavailable  # noqa: F401  (the intake's 503 answer, imported on its first use)
        from lib.scheduling.warm_up import exercise_intake_parsers

        exercise_intake_parsers()

    @cached_property
    def clock(self) -> Any:
        """The system clock, or the local-only file clock when ``DEV_CLOCK_FILE`` is set."""
        from lib.clock import FileClock, SystemClock

        if self.settings.dev_clock_file:
            return FileClock(self.settings.dev_clock_file)
        return SystemClock()

    @cached_property
    def store(self) -> Any:
        """The Cosmos DB database (one client per process)."""
        from lib.store.cosmos import CosmosStore

        return CosmosStore.from_settings(self.settings)

    @cached_property
    def repos(self) -> Any:
        """All repositories, as attributes of one namespace."""
        from types import SimpleNamespace

        from lib.store.appointments import AppointmentRepository
        from lib.store.contacts import ContactRepository
        from lib.store.environments import EnvironmentRepository
        from lib.store.links import LinkRepository
        from lib.store.messages import ProcessedMessages, RejectedMessages, message_partition_key
        from lib.store.outbox import OutboxRepository
        from lib.store.timer_state import TimerStateRepository
        from lib.store.visit_events import VisitEventRepository
        from lib.store.visits import VisitDocuments

        return SimpleNamespace(
            environments=EnvironmentRepository(self.store),
            appointments=AppointmentRepository(self.store),
            contacts=ContactRepository(self.store),
            outbox=OutboxRepository(self.store),
            links=LinkRepository(self.store),
            processed=ProcessedMessages(self.store, message_partition_key(self.settings.link_signing_key),
                                        transactional_batch=self.settings.cosmos_transactional_batch),
            rejected=RejectedMessages(self.store, ttl_seconds=self.settings.hl7_rejected_ttl_days * 86400),
            timer_state=TimerStateRepository(self.store),
            visit_events=VisitEventRepository(self.store),
            visits=VisitDocuments(self.store, transactional_batch=self.settings.cosmos_transactional_batch),
        )

    @cached_property
    def queues(self) -> Any:
        """The queue producer (base64 messages, as the host expects)."""
        from lib.queues import QueueProducer

        return QueueProducer(self.settings)

    @cached_property
    def readiness_queues(self) -> Any:
        """The queue service client of the readiness check (``lib.operations.health``): one per process, so a
        probe reuses its connections and credential; no retry, short timeouts (the probe answers on time)."""
        from lib.operations.health import DEFAULT_CHECK_TIMEOUT
        from lib.operations.queues import WATCHED_QUEUES, queue_service_client

        return queue_service_client(self.settings, parallel_reads=len(WATCHED_QUEUES), retry_total=0,
                                    connection_timeout=DEFAULT_CHECK_TIMEOUT, read_timeout=DEFAULT_CHECK_TIMEOUT)

    @cached_property
    def join_links(self) -> Any:
        """Join-link token maker/checker."""
        from lib.sms.links import JoinLinks

        return JoinLinks(self.settings.link_signing_key)

    @cached_property
    def intake(self) -> Any:
        """The HL7 intake service."""
        from lib.clock import SystemClock
        from lib.scheduling.intake import IntakeService
        from lib.scheduling.signature import JwsRequestVerifier
        from lib.scheduling.visit_identity import patient_key
        from lib.store.jti import JtiStore

        r = self.repos
        return IntakeService(
            environments=r.environments,
            visits=r.visits,
            contacts=r.contacts,
            outbox=r.outbox,
            links=r.links,
            processed=r.processed,
            rejected=r.rejected,
            # Signatures carry the sender's wall-clock times: checked against the real clock, never the
            # local demo clock (DEV_CLOCK_FILE).
            verifier=JwsRequestVerifier(jti=JtiStore(self.store), clock=SystemClock()),
            clock=self.clock,
            patient_id_key=patient_key(self.settings.link_signing_key),
        )

    @cached_property
    def sms_sender(self) -> Any:
        """The ACS SMS client."""
        from lib.sms.sender import AcsSmsSender

        return AcsSmsSender(
            connection_string=self.settings.acs_connection_string,
            endpoint=self.settings.acs_endpoint,
            verify=self.settings.tls_verify,
        )

    @cached_property
    def dispatcher(self) -> Any:
        """The outbox dispatcher."""
        from lib.sms.dispatcher import Dispatcher

        r = self.repos
        return Dispatcher(
            outbox=r.outbox,
            appointments=r.appointments,
            contacts=r.contacts,
            environments=r.environments,
            sender=self.sms_sender,
            links=self.join_links,
            public_base_url=self.settings.public_base_url,
            clock=self.clock,
            opt_outs=self.opt_outs,
            messages=self.sms_messages,
            rate_limiter=self.sender_rate,
            reports=self.report_feed,
        )

    @cached_property
    def opt_outs(self) -> Any:
        """SMS opt-outs per (sender, keyed hash of the recipient) and the once-a-day HELP markers."""
        from lib.store.opt_outs import OptOutRepository, opt_out_key

        return OptOutRepository(self.store, opt_out_key(self.settings.link_signing_key))

    @cached_property
    def sms_messages(self) -> Any:
        """ACS message ID -> outbox item, for delivery reports."""
        from lib.store.sms_messages import SmsMessageRepository

        return SmsMessageRepository(self.store)

    @cached_property
    def sender_rate(self) -> Any:
        """The per-sender-number per-minute budget shared by every instance."""
        from lib.store.sender_rate import SenderRateLimiter

        return SenderRateLimiter(self.store)

    @cached_property
    def acs_events(self) -> Any:
        """Applies ACS SMS events from Event Grid (delivery reports, STOP/START/HELP)."""
        from lib.sms.events import AcsEventHandler

        r = self.repos
        return AcsEventHandler(outbox=r.outbox, messages=self.sms_messages, opt_outs=self.opt_outs,
                               environments=r.environments, sender=self.sms_sender, clock=self.clock,
                               public_base_url=self.settings.public_base_url, reports=self.report_feed)

    @cached_property
    def portal(self) -> Any:
        """The configuration portal's services (access, environments, approvals, certificates, audit)."""
        return _PortalServices(self)

    # ---- launch, join, Teams meetings, EHR write-back (issue 2) ---------------------------------------
    @cached_property
    def outbound_http(self) -> Any:
        """The outbound HTTP client of the SMART, Graph and Epic calls (verified TLS, timeouts, no redirects)."""
        from lib.smart.transport import HttpClient

        return HttpClient(verify=self.settings.tls_verify)

    @cached_property
    def smart_keys(self) -> Any:
        """Our ``private_key_jwt`` keys from ``SMART_PRIVATE_KEYS`` (Key Vault) or ``SMART_PRIVATE_KEYS_FILE``
        (raises ``LaunchError`` when missing; not cached then, so fixing the file needs no restart)."""
        from lib.smart.keys import SmartKeys

        if self.settings.smart_private_keys_pem:
            return SmartKeys.from_pem(self.settings.smart_private_keys_pem)
        return SmartKeys.from_file(self.settings.smart_private_keys_file)

    @cached_property
    def smart_keyring(self) -> Any:
        """Our SMART keys per environment kind: ``test`` = ``SMART_PRIVATE_KEYS(_FILE)``, ``production`` =
        ``SMART_PRIVATE_KEYS_PRODUCTION(_FILE)`` (docs/launch.md "Keys"); each loaded on first use."""
        from lib.smart.keys import SmartKeyring, SmartKeys

        s = self.settings

        def production() -> Any:
            if s.smart_private_keys_production_pem:
                return SmartKeys.from_pem(s.smart_private_keys_production_pem, setting="SMART_PRIVATE_KEYS_PRODUCTION")
            return SmartKeys.from_file(s.smart_private_keys_production_file,
                                       setting="SMART_PRIVATE_KEYS_PRODUCTION_FILE")

        return SmartKeyring({"test": lambda: self.smart_keys, "production": production})

    @cached_property
    def smart_discovery(self) -> Any:
        """SMART discovery with its per-process cache (shared by launches and write-back)."""
        from lib.smart.discovery import SmartDiscovery

        return SmartDiscovery(self.outbound_http)

    @cached_property
    def graph(self) -> Any:
        """The Microsoft Graph client (MSAL certificate credential, built on first token request)."""
        from lib.smart.errors import LaunchError
        from lib.teams.graph import GraphClient, MsalCertificateTokenSource

        s = self.settings

        class _Unconfigured:
            def token(self) -> str:
                raise LaunchError("GRAPH_NOT_CONFIGURED")

        tokens: Any = _Unconfigured()
        if s.graph_tenant_id and s.graph_client_id and (s.graph_client_cert_pem or s.graph_client_cert_file):
            tokens = MsalCertificateTokenSource(
                authority_host=s.graph_authority_host, tenant_id=s.graph_tenant_id, client_id=s.graph_client_id,
                cert_file=s.graph_client_cert_file, cert_pem=s.graph_client_cert_pem, verify=s.tls_verify,
            )
        self.graph_tokens = tokens
        return GraphClient(base_url=s.graph_base_url, tokens=tokens, http=self.outbound_http)

    @cached_property
    def provider_signin(self) -> Any:
        """The clinicians' one-time Microsoft 365 sign-in (MSAL auth-code + PKCE), or ``None`` without Graph."""
        from lib.teams.signin import MsalEntraSignIn

        _ = self.graph  # builds graph_tokens
        application = getattr(self.graph_tokens, "application", None)
        if application is None:
            return None
        return MsalEntraSignIn(application, self.graph_tokens.new_application)

    @cached_property
    def users(self) -> Any:
        """EHR user ID -> Entra object ID."""
        from lib.store.users import UserRepository

        return UserRepository(self.store)

    @cached_property
    def meetings(self) -> Any:
        """One Teams meeting per visit, organized by the signed-in clinician or a fallback organizer; its
        call events are subscribed to as soon as it exists."""
        from lib.teams.organizers import DirectoryOrganizerResolver
        from lib.visits.meetings import MeetingService

        return MeetingService(appointments=self.repos.appointments, graph=self.graph,
                              organizers=DirectoryOrganizerResolver(self.users), presence=self.presence_subscriptions)

    # ---- presence from Graph (issue 13) -------------------------------------------------------------
    @cached_property
    def notification_certificates(self) -> dict[str, Any]:
        """Our Graph notification encryption certificates by ID, the current one first: the Graph client
        certificate (``GRAPH_CLIENT_CERT(_FILE)``, private key + certificate) and, during a rotation, the previous
        one (``GRAPH_CLIENT_CERT_PREVIOUS``: subscriptions made with it are renewed with the current one);
        empty when none is configured."""
        from lib.presence.encrypted_content import NotificationCertificate

        s = self.settings
        pem = s.graph_client_cert_pem or (s.graph_client_cert_file.read_bytes() if s.graph_client_cert_file
                                          and s.graph_client_cert_file.exists() else None)
        if not pem:
            return {}
        found: dict[str, Any] = {}
        for each in (pem, s.graph_client_cert_previous_pem):
            if each:
                certificate = NotificationCertificate.from_pem(each)
                found.setdefault(certificate.certificate_id, certificate)
        return found

    @cached_property
    def participant_identities(self) -> Any:
        """ACS identity -> visit and role (the join page registers the identities it issues)."""
        from lib.store.participant_identities import ParticipantIdentityRepository

        return ParticipantIdentityRepository(self.store)

    @cached_property
    def presence_repo(self) -> Any:
        """Roster snapshots per visit."""
        from lib.store.presence import PresenceRepository

        return PresenceRepository(self.store)

    @cached_property
    def presence_subscriptions(self) -> Any:
        """Graph subscriptions to meeting call events (create, renew, end, lifecycle)."""
        from lib.presence.subscriptions import PresenceSubscriptions
        from lib.store.graph_subscriptions import GraphSubscriptionRepository
        from lib.teams.subscriptions import GraphSubscriptionsClient, beta_base

        _ = self.graph  # builds graph_tokens
        certificates = self.notification_certificates
        client = GraphSubscriptionsClient(base_url=beta_base(self.settings.graph_base_url), tokens=self.graph_tokens,
                                          http=self.outbound_http)
        from lib.clock import SystemClock

        # Graph checks expiry times against real time: the system clock, never the demo clock.
        return PresenceSubscriptions(repo=GraphSubscriptionRepository(self.store), graph=client,
                                     certificate=next(iter(certificates.values()), None),
                                     public_base_url=self.settings.public_base_url, clock=SystemClock(),
                                     queues=self.queues, presence=self.presence_repo)

    @cached_property
    def meeting_times(self) -> Any:
        """Moves meetings of rescheduled visits (Graph ``PATCH onlineMeeting``)."""
        from lib.teams.meeting_times import MeetingTimesClient
        from lib.visits.meeting_times import MeetingTimesSync

        _ = self.graph  # builds graph_tokens
        client = MeetingTimesClient(base_url=self.settings.graph_base_url, tokens=self.graph_tokens,
                                    http=self.outbound_http)
        return MeetingTimesSync(appointments=self.repos.appointments, container=self.store.container("visits"),
                                graph=client, presence=self.presence_subscriptions, clock=self.clock)

    @cached_property
    def call_records(self) -> Any:
        """Settles attendance and keeps media quality from the Graph call record after the meeting."""
        from lib.presence.call_records import CallRecordService
        from lib.store.call_quality import CallQualityRepository
        from lib.teams.call_records import CallRecordsClient

        _ = self.graph  # builds graph_tokens
        client = CallRecordsClient(base_url=self.settings.graph_base_url, tokens=self.graph_tokens,
                                   http=self.outbound_http)
        return CallRecordService(appointments=self.repos.appointments, presence=self.presence_repo, client=client,
                                 roster=self.roster, visit_events=self.repos.visit_events,
                                 quality=CallQualityRepository(self.store), queues=self.queues, clock=self.clock,
                                 reports=self.report_feed)

    @cached_property
    def attendance_reports(self) -> Any:
        """Fills a visit's participant events from the meeting's attendance report (tenants that allow neither
        call-event subscriptions nor call records, or ``presence_source`` ``attendance_report``)."""
        from lib.presence.attendance_reports import AttendanceReportService
        from lib.store.call_quality import CallQualityRepository
        from lib.teams.attendance_reports import AttendanceReportsClient

        _ = self.graph  # builds graph_tokens
        client = AttendanceReportsClient(base_url=self.settings.graph_base_url, tokens=self.graph_tokens,
                                         http=self.outbound_http)
        return AttendanceReportService(appointments=self.repos.appointments, client=client,
                                       classify=self.roster.classify, visit_events=self.repos.visit_events,
                                       quality=CallQualityRepository(self.store), queues=self.queues,
                                       clock=self.clock, reports=self.report_feed)

    @cached_property
    def after_meeting(self) -> Any:
        """Runs the ``call-records`` queue's messages: call record, else attendance report."""
        from lib.presence.after_meeting import AfterMeeting

        return AfterMeeting(appointments=self.repos.appointments, presence=self.presence_repo,
                            call_records=self.call_records, attendance=self.attendance_reports, clock=self.clock)

    @cached_property
    def status_passes(self) -> Any:
        """Passes to a visit's live status page (issued at a clinician's launch with ``view=status``)."""
        from lib.presence.status_pass import StatusPasses

        return StatusPasses(self.settings.link_signing_key)

    @cached_property
    def roster(self) -> Any:
        """Call events -> participant events."""
        from lib.presence.roster import RosterService

        return RosterService(presence=self.presence_repo, visit_events=self.repos.visit_events, users=self.users,
                             identities=self.participant_identities, queues=self.queues, clock=self.clock,
                             reports=self.report_feed)

    @cached_property
    def notifications(self) -> Any:
        """Checks, decrypts and applies Graph change and lifecycle notifications."""
        from lib.presence.notifications import NotificationService

        return NotificationService(subscriptions=self.presence_subscriptions, roster=self.roster,
                                   certificates=self.notification_certificates,
                                   validation_tokens=self.validation_tokens)

    @cached_property
    def identity_platform_keys(self) -> Any:
        """The Microsoft identity platform's issuer and signing keys for our tenant (OpenID configuration at
        ``GRAPH_AUTHORITY_HOST``), cached; ``None`` without ``GRAPH_TENANT_ID``."""
        from lib.presence.validation_tokens import IdentityPlatformKeys, http_json

        s = self.settings
        if not s.graph_tenant_id:
            return None
        return IdentityPlatformKeys(f"{s.graph_authority_host}/{s.graph_tenant_id}/.well-known/openid-configuration",
                                    fetch_json=http_json(self.outbound_http), clock=self.clock)

    @cached_property
    def validation_tokens(self) -> Any:
        """Checks the ``validationTokens`` of Graph deliveries; ``None`` without ``GRAPH_TENANT_ID`` and
        ``GRAPH_CLIENT_ID`` (then every rich delivery is refused)."""
        from lib.clock import SystemClock
        from lib.presence.validation_tokens import ValidationTokenVerifier

        keys = self.identity_platform_keys
        if keys is None or not self.settings.graph_client_id:
            return None
        # The tokens carry the identity platform's wall-clock times: the system clock, never the demo clock.
        return ValidationTokenVerifier(keys, client_id=self.settings.graph_client_id, clock=SystemClock())

    @cached_property
    def visit_events(self) -> Any:
        """Records participant events and queues them for write-back."""
        from lib.visits.events import VisitEventRecorder

        return VisitEventRecorder(visit_events=self.repos.visit_events, queues=self.queues, clock=self.clock,
                                  identities=self.participant_identities)

    @cached_property
    def launch(self) -> Any:
        """The SMART EHR launch service (provider and patient)."""
        from lib.smart.id_token import IdTokenVerifier
        from lib.store.launch_states import LaunchStateRepository
        from lib.store.signin_states import SignInStateRepository, UsedLinkRepository
        from lib.visits.launch import LaunchService

        r = self.repos
        return LaunchService(
            environments=r.environments,
            launch_states=LaunchStateRepository(self.store),
            appointments=r.appointments,
            links=r.links,
            discovery=self.smart_discovery,
            id_tokens=IdTokenVerifier(self.outbound_http),
            keys=self.smart_keyring,
            http=self.outbound_http,
            meetings=self.meetings,
            events=self.visit_events,
            join_links=self.join_links,
            clock=self.clock,
            public_base_url=self.settings.public_base_url,
            users=self.users,
            signin=self.provider_signin,
            signin_states=SignInStateRepository(self.store),
            encrypted_keys=self.settings.epic_cal_keys.get,
            used_links=UsedLinkRepository(self.store),
            status_passes=self.status_passes,
            redirect_origins=self.launch_redirect_origins,
            followup=self.launch_followup,
        )

    @cached_property
    def launch_followup(self) -> Any:
        """A launch's click record and its new meeting's subscription, queued past the redirect."""
        from lib.visits.launch_followup import LaunchFollowUp

        return LaunchFollowUp(queues=self.queues, appointments=self.repos.appointments, events=self.visit_events,
                              presence=self.presence_subscriptions)

    @property
    def launch_redirect_origins(self) -> tuple[str, ...]:
        """Where a launch's redirect chain may go after our callback: the Entra authority, the Teams hosts."""
        from lib.visits.framing import origin_of

        origins = (origin_of(self.settings.graph_authority_host), *self.settings.teams_join_origins)
        return tuple(dict.fromkeys(o for o in origins if o))

    @cached_property
    def frame_origins(self) -> Any:
        """Every environment's frame origins (cached a minute), for error pages of no known environment."""
        from lib.visits.framing import KnownFrameOrigins

        return KnownFrameOrigins(self.repos.environments.all)

    @cached_property
    def throttle(self) -> Any:
        """Per-process rate limits of anonymous launch attempts and secret guesses (lib/visits/throttle.py)."""
        from lib.visits.throttle import AnonymousThrottle

        return AnonymousThrottle(launch_limit=self.settings.launch_rate_limit,
                                 guess_limit=self.settings.guess_rate_limit)

    @cached_property
    def join(self) -> Any:
        """The patient join page and its events."""
        from lib.visits.join import JoinService

        r = self.repos
        return JoinService(join_links=self.join_links, links=r.links, appointments=r.appointments,
                           environments=r.environments, meetings=self.meetings, events=self.visit_events,
                           call_identities=self.call_identities, relay_urls=self.settings.call_relay_urls,
                           clock=self.clock, public_base_url=self.settings.public_base_url,
                           known_frame_origins=self.frame_origins.origins)

    @cached_property
    def call_identities(self) -> Any:
        """The ACS identity client that issues the patient's call token (``None`` when ACS is not set)."""
        from lib.visits.call_identity import AcsCallIdentityIssuer

        if not (self.settings.acs_connection_string or self.settings.acs_endpoint):
            return None
        return AcsCallIdentityIssuer(connection_string=self.settings.acs_connection_string,
                                     endpoint=self.settings.acs_endpoint, verify=self.settings.tls_verify)

    @cached_property
    def ehr_writeback(self) -> Any:
        """The Epic ``SetExternalConnectionStatus`` client (backend-services token, cached)."""
        from lib.clock import SystemClock
        from lib.ehr.writeback import EpicWritebackClient

        # Assertion times are checked by Epic against real time: the system clock, never the demo clock.
        return EpicWritebackClient(http=self.outbound_http, discovery=self.smart_discovery,
                                   keys=self.smart_keyring, clock=SystemClock())

    @cached_property
    def writeback(self) -> Any:
        """Writes visit events back to the EHR (queue trigger)."""
        from lib.visits.writeback import WritebackService

        return WritebackService(visit_events=self.repos.visit_events, environments=self.repos.environments,
                                ehr=self.ehr_writeback, clock=self.clock, queues=self.queues)


    # ---- reports (issue 14) -------------------------------------------------------------------------------
    @cached_property
    def report_feed(self) -> Any:
        """Tells the reports that something changed: one ``report-updates`` queue message."""
        from lib.reports.inputs import ReportFeed

        return ReportFeed(self.queues)

    @cached_property
    def report_recorder(self) -> Any:
        """Applies ``report-updates`` messages to the report documents (queue trigger)."""
        from lib.reports.recorder import ReportRecorder
        from lib.store.reports import ReportSheetRepository, ReportVisitRepository

        r = self.repos
        return ReportRecorder(visits=ReportVisitRepository(self.store), sheets=ReportSheetRepository(self.store),
                              appointments=r.appointments, outbox=r.outbox, environments=r.environments,
                              clock=self.clock)

    @cached_property
    def reports(self) -> Any:
        """Builds reports for a date range from the day sheets."""
        from lib.reports.service import ReportService
        from lib.store.reports import ReportSheetRepository

        return ReportService(sheets=ReportSheetRepository(self.store), environments=self.repos.environments,
                             clock=self.clock)


class _PortalServices:
    """The configuration portal's services (lib/config), built once from :class:`Services`."""

    def __init__(self, svc: Services) -> None:
        from lib.clock import SystemClock
        from lib.config.access import Access, CsrfTokens
        from lib.config.approvals import ApprovalService
        from lib.config.audit import AuditLog
        from lib.config.certificates import CertificateAdmin
        from lib.config.environments import EnvironmentAdmin
        from lib.config.operations import OperationStore
        from lib.config.phone_numbers import PhoneNumberService
        from lib.config.writeback_failures import WritebackFailures
        from lib.smart.id_token import IdTokenVerifier
        s = svc.settings
        self.public_base_url = s.public_base_url
        self.access = Access(secret=s.link_signing_key, easy_auth_enabled=s.easy_auth_enabled,
                             tenant_id=s.graph_tenant_id, audience=s.easy_auth_client_id,
                             dev_signin=s.portal_dev_signin,
                             secure_cookies=s.public_base_url.lower().startswith("https://"))
        self.csrf = CsrfTokens(s.link_signing_key)
        self.audit = AuditLog(svc.store)
        self.operations = OperationStore(svc.store)
        # The app's own repository: its all() reads fresh (an admin sees what is stored) and its put() drops this
        # process's caches, so launches here see a change at once (other instances within the cache's 30 s).
        self.environments = EnvironmentAdmin(
            environments=svc.repos.environments, audit=self.audit, clock=svc.clock,
            public_base_url=s.public_base_url, discover=self._discover_problem)
        self._svc = svc
        self.certificates = CertificateAdmin(admin=self.environments, clock=SystemClock())
        self.approvals = ApprovalService(
            admin=self.environments, operations=self.operations, discovery=svc.smart_discovery,
            keys=svc.smart_keyring, http=svc.outbound_http, id_tokens=IdTokenVerifier(svc.outbound_http),
            clock=svc.clock, wall_clock=SystemClock(), public_base_url=s.public_base_url)
        self.phone_numbers = PhoneNumberService(client=self._phone_numbers_client, operations=self.operations,
                                                admin=self.environments, audit=self.audit, clock=SystemClock())
        self.writeback_failures = WritebackFailures(operations=svc, environments=self.environments, audit=self.audit,
                                                    clock=svc.clock)

    def _phone_numbers_client(self) -> Any:
        """The ACS phone numbers client (connection string locally, managed identity in Azure)."""
        from azure.communication.phonenumbers import PhoneNumbersClient

        s = self._svc.settings
        options: dict[str, Any] = {"connection_verify": s.tls_verify}
        if s.acs_connection_string:
            return PhoneNumbersClient.from_connection_string(s.acs_connection_string, **options)
        if s.acs_endpoint:
            from azure.identity import DefaultAzureCredential

            return PhoneNumbersClient(s.acs_endpoint, DefaultAzureCredential(), **options)
        raise ValueError("ACS is not configured")

    def _discover_problem(self, url: str, client_id: str) -> str | None:
        """Why SMART discovery of a new FHIR base URL fails, or ``None`` when it answers."""
        from lib.smart.errors import LaunchError

        try:
            self._svc.smart_discovery.discover(url, client_id)
        except LaunchError as exc:
            detail = exc.admin_hint.replace("{iss}", url)
            return f"SMART discovery did not answer usefully ({exc.code}): {detail}"
        return None


def services() -> Services:
    """The process-wide :class:`Services`, built on first call.

    Raises:
        lib.settings.SettingsError: a required setting is missing.
    """
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = Services()
    return _services


def reset() -> None:
    """Forget the built services (tests that change settings)."""
    global _services
    with _lock:
        _services = None
