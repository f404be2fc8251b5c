"""The SMART EHR launch of a video visit, provider (Hyperspace/Haiku/Canto) and patient (MyChart).

The flow follows SMART App Launch STU 2.2 (app-launch.html), one step per method:

``begin`` (``GET /api/launch/provider|patient?iss=..&launch=..[&sessionId=..&departmentId=..]``)
  2. Launch: ``iss`` must *exactly* equal an approved FHIR base URL of a configured environment; an unknown
     ``iss`` is refused before any outbound request (no discovery fetch for it: no SSRF, no assertion sent
     to an attacker's token endpoint).
  3. Discovery of the authorize and token endpoints (cached).
  4. Authorization request: new ``state`` + PKCE S256 + ``nonce`` stored server-side in ``launch_states``,
     bound to this browser by the ``vv_launch`` cookie; a 302 (GET) or an auto-submitting form (POST).

``complete`` (``GET /api/launch/callback?code=..&state=..``)
  - ``state`` must exist, be fresh, belong to this browser's cookie, and is consumed (single use).
    The FHIR server comes from the stored state; an ``iss`` on the callback (RFC 9207) must name the launch's
    authorization server or the callback is refused (mix-up defence, :mod:`lib.visits.launch_checks`).
  5. Token exchange (code + PKCE verifier + ``private_key_jwt``); the id_token is verified (signature,
     iss, aud, exp, nonce) and ``fhirUser`` must fit the launch kind.
  6. The appointment comes from the token's context, never from the URL: ``GET {iss}/Appointment/{id}`` gives
     the CSN. ``sessionId`` in the launch URL is only a hint (a mismatch is logged, never used). A patient
     launch goes on only when the token's ``patient`` is a participant of that Appointment.
  - The appointment record is read, or created minimally (status ``booked``) when HL7 has not sent it yet;
    its Teams meeting is reused or created (``createOrGet``) and stored with ``If-Match``.
  - Provider: a ``clinician_launched`` click record (ID deterministic per appointment + clinician + launch) is
    stored, never written back as presence; the browser goes (302) to the meeting's ``joinWebUrl``. When the
    meeting was created now, the click and the meeting's call-events subscription go in one ``launch-followup``
    queue message instead, done after the redirect (:mod:`lib.visits.launch_followup`).
  - Patient: the browser goes to the patient join page of the same meeting (``/api/join/{token}``).

``complete`` continued: the provider's organizer (docs/launch.md "Organizer")
  - When the environment has ``provider_signin`` and the clinician has no ``users`` mapping yet, the browser is
    sent once through the Microsoft 365 sign-in (OIDC auth-code + PKCE, MSAL) and comes back to
    ``complete_signin`` (``GET /api/launch/signin``), which stores EHR user ID -> Entra object ID and continues.
  - The meeting's organizer is then the clinician (mapping), else the department's or environment's fallback.

``begin_encrypted`` (``GET /api/launch/provider|patient?env=..&data=..``): Epic's encrypted link, for an
  environment whose ``launch_mode`` is ``encrypted`` (format and its assumptions: :mod:`lib.smart.encrypted_link`).

Outbound calls per launch (cold caches): discovery 1 (``smart-configuration``; +1 ``metadata`` fallback),
token 1, JWKS of the id_token issuer 1, FHIR Appointment read 1, Graph token 1 + ``createOrGet`` 1 when the
visit has no meeting yet. Warm: token, FHIR read, and Graph only for a visit without a meeting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from lib.clock import Clock, SystemClock
from lib.ehr.fhir_appointments import FhirAppointment, read_appointment
from lib.models import ENDED_STATUSES, Appointment, EnvironmentConfig, appointment_key
from lib.presence.status_pass import StatusPasses
from lib.smart.authorize import (
    LaunchKind,
    build_authorize_request,
    callback_url,
    new_nonce,
    new_pkce,
    new_state,
    scopes_for,
)
from lib.smart.discovery import SmartDiscovery
from lib.smart.encrypted_link import FUTURE_SKEW, decrypt_link
from lib.smart.errors import CATALOG, LaunchError
from lib.smart.id_token import Identity, IdTokenVerifier
from lib.smart.keys import SmartKeys
from lib.smart.oauth_errors import OAuthError, authorize_refusal
from lib.smart.token import exchange_code
from lib.smart.transport import HttpClient
from lib.sms.links import JoinLinks
from lib.store.appointments import AppointmentRepository
from lib.store.environments import EnvironmentRepository
from lib.store.errors import AlreadyExists, ConcurrencyConflict
from lib.store.launch_states import LAUNCH_STATE_TTL_SECONDS, LaunchState, LaunchStateRepository
from lib.store.links import LinkRepository
from lib.store.signin_states import SignInState, SignInStateRepository, UsedLinkRepository
from lib.store.users import UserMapping, UserRepository
from lib.teams.signin import SIGNIN_PATH, EntraSignIn
from lib.visits.events import VisitEventRecorder
from lib.visits.framing import FrameContext, check_frame, origin_of
from lib.visits.launch_checks import check_callback_issuer, check_patient_context, launch_parameters
from lib.visits.launch_followup import LaunchClick, LaunchFollowUp
from lib.visits.launch_pages import authorize_post_page
from lib.visits.meetings import MeetingService
from lib.visits.pages import Cookie, Page, Redirect

log = logging.getLogger(__name__)

LAUNCH_COOKIE = "vv_launch"
LAUNCH_COOKIE_PATH = "/api/launch"
LINK_GRACE = timedelta(hours=2)
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
_HINT = re.compile(r"[A-Za-z0-9._-]{1,64}")
PROVIDER_USER_TYPES = frozenset({"Practitioner"})
PATIENT_USER_TYPES = frozenset({"Patient", "RelatedPerson"})
_FHIR_VERSION = re.compile(r"^(?P<prefix>.+/api/FHIR/)(?P<version>DSTU2|STU3|R4)/?$", re.IGNORECASE)
_ENV_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def browser_binding(cookie_value: str) -> str:
    """The value stored with a launch state for a launch cookie: SHA-256 hex (the cookie itself is not stored)."""
    return hashlib.sha256(cookie_value.encode()).hexdigest()


def launch_attempt(state: str) -> str:
    """The name of a SMART launch in its click record: a digest of its ``state`` (the state itself is a
    secret of the browser's launch and goes into no document or queue message)."""
    return "state-" + hashlib.sha256(state.encode()).hexdigest()[:32]


def clean_hint(value: str | None) -> str | None:
    """A launch-URL hint (``sessionId``, ``departmentId``) when it is a plain ID, else ``None``.

    A value still holding an unsubstituted Epic token (``%PERFDEPID;;; ; ;;NONE;%``) is dropped; of a
    substituted one (``10501101;;; ; ;;NONE;``) the first plain part is kept.
    """
    if not value or "%" in value:
        return None
    for token in re.split(r"[;\s]+", value):
        if token and token.upper() != "NONE" and _HINT.fullmatch(token):
            return token
    return None


class LaunchService:
    """Begins and completes SMART EHR launches.

    Args:
        environments, launch_states, appointments, links: repositories.
        discovery: SMART discovery (cached).
        id_tokens: id_token verifier (caches the EHR's JWKS).
        keys: returns our signing keys of an environment kind (``keys("test")``; a callable, so a missing key
            fails the launch, not the app).
        http: outbound HTTP client (token and FHIR calls).
        meetings: ensures the visit's Teams meeting.
        events: records visit events.
        join_links: makes the patient's join-page token.
        clock: the domain clock (visit events, join-link expiry; a file clock in the local demo).
        public_base_url: ``PUBLIC_BASE_URL``: the redirect URI base and the cookies' ``Secure`` flag.
        wall_clock: real time for everything other parties check: the launch state's 10 minutes, the client
            assertion's ``iat``/``exp``, the id_token's ``exp``/``iat`` (default: the system clock, even when
            the domain clock is moved for a demo).
        users: EHR user ID -> Entra object ID mappings (provider sign-in); ``None`` = no sign-in.
        signin: the Microsoft 365 sign-in (MSAL); ``None`` = no sign-in (fallback organizers only).
        signin_states: pending sign-ins.
        encrypted_keys: environment ID -> AES key of its encrypted links (``EPIC_CAL_KEYS``), or ``None``.
        used_links: single-use claims of encrypted links.
        redirect_origins: origins the callback may send the browser to after the authorize POST (the Entra
            authority, the Teams meeting host): the POST page's ``form-action`` lists them.
        followup: queues the click record and the new meeting's subscription after the redirect
            (:mod:`lib.visits.launch_followup`); ``None``: both are done before it.
    """

    def __init__(
        self,
        *,
        environments: EnvironmentRepository,
        launch_states: LaunchStateRepository,
        appointments: AppointmentRepository,
        links: LinkRepository,
        discovery: SmartDiscovery,
        id_tokens: IdTokenVerifier,
        keys: Callable[[str], SmartKeys],
        http: HttpClient,
        meetings: MeetingService,
        events: VisitEventRecorder,
        join_links: JoinLinks,
        clock: Clock,
        public_base_url: str,
        wall_clock: Clock | None = None,
        users: UserRepository | None = None,
        signin: EntraSignIn | None = None,
        signin_states: SignInStateRepository | None = None,
        encrypted_keys: Callable[[str], bytes | None] | None = None,
        used_links: UsedLinkRepository | None = None,
        status_passes: StatusPasses | None = None,
        redirect_origins: tuple[str, ...] = (),
        followup: LaunchFollowUp | None = None,
    ) -> None:
        self._environments = environments
        self._status_passes = status_passes
        self._states = launch_states
        self._appointments = appointments
        self._links = links
        self._discovery = discovery
        self._id_tokens = id_tokens
        self._keys = keys
        self._http = http
        self._meetings = meetings
        self._events = events
        self._join_links = join_links
        self._clock = clock
        self._wall = wall_clock or SystemClock()
        self._public = public_base_url.rstrip("/")
        self._secure = self._public.lower().startswith("https://")
        self._own_origin = origin_of(self._public) or self._public
        self._redirect_origins = redirect_origins
        self._users = users
        self._signin = signin
        self._signin_states = signin_states
        self._encrypted_keys = encrypted_keys
        self._used_links = used_links
        self._followup = followup

    # ---- begin -------------------------------------------------------------------------------------
    def begin(self, kind: LaunchKind, query: Mapping[str, str], browser_cookie: str | None,
              *, correlation_id: str | None = None, frame: FrameContext | None = None) -> Redirect | Page:
        """Steps 2–4: check ``iss``, discover, store the launch state, send the browser to authorize.

        Args:
            kind: ``provider`` or ``patient`` (which launch URL was opened).
            query: the launch URL's query parameters (``iss``, ``launch``, optional ``env`` (the environment
                whose integration record holds the URL), ``sessionId``, ``departmentId``); or ``env`` + ``data``
                for an encrypted link (:meth:`begin_encrypted`).
            browser_cookie: the ``vv_launch`` cookie value, when the browser sent one.
            frame: the request's framing headers (a frame of an origin the environment does not allow is
                refused with a readable page).

        Raises:
            LaunchError: ``FRAME_NOT_ALLOWED``, ``ISS_MISSING``, ``LAUNCH_MISSING``, ``LAUNCH_INVALID``,
                ``ISS_NOT_ALLOWED``, ``FHIR_VERSION_MISMATCH``,
                ``ENVIRONMENT_NOT_CONFIGURED``, ``TENANT_CONFIG_NOT_FOUND``, ``ENVIRONMENT_MISMATCH``,
                ``ENVIRONMENT_NOT_APPROVED``, ``DISCOVERY_*``, ``SMART_KEYS_MISSING``.
            StoreUnavailable: Cosmos DB is down.
        """
        if not query.get("iss") and query.get("data"):
            return self.begin_encrypted(kind, query, browser_cookie, correlation_id=correlation_id, frame=frame)
        iss, launch = launch_parameters(query)
        named = self._named_environment(query.get("env"))
        environment = self._environments.find_by_fhir_base_url(iss)
        if environment is None:
            log.warning("launch refused: iss not allowed kind=%s correlation=%s", kind, correlation_id)
            raise self._unknown_iss(iss, named)
        if named is not None and named.id != environment.id:
            log.warning("launch refused: launch URL of environment=%s, iss of environment=%s correlation=%s",
                        named.id, environment.id, correlation_id)
            raise LaunchError("TENANT_CONFIG_NOT_FOUND" if named.kind != environment.kind else "ENVIRONMENT_MISMATCH")
        environment = self._launchable(environment, iss)
        check_frame(frame, environment.frame_origins, self._own_origin)
        # Fail before the EHR round trip when our key (of this environment kind and algorithm) is missing.
        self._keys(environment.kind).signer(environment.client_assertion_alg)
        config = self._discovery.discover(iss, environment.epic_client_id)

        cookie_value = browser_cookie if browser_cookie and _COOKIE_VALUE.fullmatch(browser_cookie) else None
        cookie_value = cookie_value or secrets.token_urlsafe(32)
        pkce, state, nonce = new_pkce(), new_state(), new_nonce()
        self._states.create(LaunchState(
            state=state,
            environment_id=environment.id,
            iss=iss,
            code_verifier=pkce.verifier,
            nonce=nonce,
            kind=kind,
            browser_binding=browser_binding(cookie_value),
            session_hint=clean_hint(query.get("sessionId")),
            department_hint=clean_hint(query.get("departmentId")),
            created_utc=self._wall.now(),
            device_test=kind == "patient" and query.get("mode") == "devicetest",
            view="status" if kind == "provider" and query.get("view") == "status" else None,
        ))
        request = build_authorize_request(
            config,
            client_id=environment.epic_client_id,
            redirect_uri=callback_url(self._public),
            scope=scopes_for(kind, config),
            state=state,
            launch=launch,
            pkce=pkce,
            nonce=nonce,
        )
        cookie = self._cookie(cookie_value, frame)
        log.info("launch begun kind=%s environment=%s method=%s correlation=%s", kind, environment.id,
                 request.method, correlation_id)
        if request.method == "POST":
            return authorize_post_page(request, redirect_origins=self._redirect_origins,
                                       frame_ancestors=environment.frame_origins, cookies=(cookie,))
        return Redirect(request.redirect_url(), cookies=(cookie,))

    # ---- complete ----------------------------------------------------------------------------------
    def complete(self, query: Mapping[str, str], browser_cookie: str | None,
                 *, correlation_id: str | None = None, frame: FrameContext | None = None) -> Redirect:
        """The callback: check and consume the state, exchange the code, resolve the visit, go to the meeting.

        Args:
            query: the callback's query parameters (``code``, ``state``, or ``error``...; an ``iss`` must name
                the launch's authorization server, RFC 9207).
            browser_cookie: the ``vv_launch`` cookie value.
            frame: the request's framing headers (a framed callback without the cookie is ``COOKIES_BLOCKED``).

        Raises:
            LaunchError: ``STATE_*``, ``COOKIES_BLOCKED``, ``CALLBACK_ISS_MISMATCH``, ``EPIC_*``, ``ID_TOKEN_INVALID``,
                ``WRONG_LAUNCH_KIND``, ``PATIENT_CONTEXT_MISSING``, ``PATIENT_MISMATCH``, ``APPOINTMENT_*``,
                ``GRAPH_*``, ``ORGANIZER_MISSING``...
            StoreUnavailable: Cosmos DB is down.
        """
        launch_state = self._take_state(query.get("state") or "", browser_cookie, frame)
        environment = self._environment_of(launch_state)
        config = self._discovery.discover(launch_state.iss, environment.epic_client_id)
        check_callback_issuer(query.get("iss"), config, launch_state.iss)
        if query.get("error"):  # Epic's words decide the page: a used launch is not a registration problem
            raise authorize_refusal(OAuthError.read(query.get("error"), query.get("error_description")))
        code_value = query.get("code") or ""
        if not code_value:
            raise LaunchError("STATE_MISSING")
        now = self._wall.now()
        tokens = exchange_code(
            self._http, token_endpoint=config.token_endpoint, code=code_value,
            redirect_uri=callback_url(self._public), code_verifier=launch_state.code_verifier,
            client_id=environment.epic_client_id, keys=self._keys(environment.kind), now=now,
            alg=environment.client_assertion_alg,
        )
        if not tokens.id_token:
            raise LaunchError("ID_TOKEN_INVALID", "The token response has no id_token: grant the openid and "
                                                  "fhirUser scopes to the app in Epic.")
        identity = self._id_tokens.verify(tokens.id_token, config=config, client_id=environment.epic_client_id,
                                          nonce=launch_state.nonce, now=now)
        check_launch_kind(launch_state.kind, identity)
        fhir_id = tokens.context.appointment_id()
        if not fhir_id:
            raise LaunchError("APPOINTMENT_CONTEXT_MISSING")
        fhir_appointment = read_appointment(self._http, fhir_base_url=launch_state.iss, appointment_id=fhir_id,
                                            access_token=tokens.access_token,
                                            csn_systems=environment.csn_identifier_systems)
        if not fhir_appointment.csn:
            raise LaunchError("APPOINTMENT_NOT_FOUND", "The FHIR Appointment of the launch carries no CSN under "
                                                       "the environment's CSN identifier systems ("
                                                       + ", ".join(environment.csn_identifier_systems)
                                                       + "): add this organization's system in the "
                                                       "configuration portal.")
        if launch_state.kind == "patient":
            check_patient_context(tokens.context, fhir_appointment)
        if launch_state.session_hint and launch_state.session_hint != fhir_appointment.csn:
            # The hint may name another visit (or another environment's): the EHR's context decides.
            log.warning("launch sessionId hint differs from the token context environment=%s correlation=%s; "
                        "using the context", environment.id, correlation_id)
        ehr_user_id = identity.ehr_user_id if launch_state.kind == "provider" else None
        appointment = self._appointment_for(environment, fhir_appointment, ehr_user_id)
        log.info("launch completed kind=%s environment=%s correlation=%s", launch_state.kind, environment.id,
                 correlation_id)
        if launch_state.kind == "provider" and launch_state.view == "status" and self._status_passes is not None:
            assert ehr_user_id is not None
            return self._provider_to_status(environment, appointment, ehr_user_id,
                                            department=launch_state.department_hint)
        if launch_state.kind == "provider":
            assert ehr_user_id is not None
            return self._provider_into_meeting(
                environment, appointment, ehr_user_id, department=launch_state.department_hint,
                attempt=launch_attempt(launch_state.state), binding=launch_state.browser_binding,
                correlation_id=correlation_id,
                frame=frame)
        return self._patient_to_join_page(environment, appointment, department=launch_state.department_hint,
                                          device_test=launch_state.device_test)

    # ---- provider: organizer, one-time Microsoft 365 sign-in ---------------------------------------
    def _provider_into_meeting(self, environment: EnvironmentConfig, appointment: Appointment, ehr_user_id: str,
                               *, department: str | None, attempt: str, binding: str,
                               correlation_id: str | None, frame: FrameContext | None = None) -> Redirect:
        """Send a clinician to the visit's meeting, through the one-time sign-in when it is still needed.

        Microsoft 365 sign-in pages refuse to be framed, so a launch inside Epic's frame does not start it: the
        visit goes on with the department's or environment's fallback organizer (the sign-in happens on the
        clinician's next top-level launch), or, with no fallback, ``SIGNIN_NEEDS_WINDOW`` says what to do.
        """
        if self._needs_signin(environment, ehr_user_id):
            if frame is None or not frame.framed:
                return self._start_signin(environment, appointment, ehr_user_id, department=department,
                                          attempt=attempt, binding=binding, correlation_id=correlation_id)
            if not (environment.fallback_organizer_id or environment.department_organizers):
                raise LaunchError("SIGNIN_NEEDS_WINDOW")
            log.info("provider sign-in deferred: framed launch, fallback organizer environment=%s correlation=%s",
                     environment.id, correlation_id)
        new_meeting = appointment.meeting is None
        appointment = self._meetings.ensure(environment, appointment, ehr_user_id=ehr_user_id, department=department,
                                            watch=self._followup is None)
        assert appointment.meeting is not None
        if self._followup is not None and new_meeting:  # one message for the click and the subscription
            click = LaunchClick(ehr_user_id, attempt, self._clock.now())
            self._followup.after_launch(appointment, click=click, watch=True, source=environment.presence_source,
                                        correlation_id=correlation_id)
        else:
            self._events.record(appointment, event_type="clinician_launched", role="provider",
                                participant_id=ehr_user_id, attempt=attempt, correlation_id=correlation_id)
        return Redirect(appointment.meeting.join_url)

    def _provider_to_status(self, environment: EnvironmentConfig, appointment: Appointment, ehr_user_id: str,
                            *, department: str | None) -> Redirect:
        """A clinician's launch with ``view=status``: to the visit's live status page (docs/presence.md), with a
        pass bound to this visit and this clinician that expires two hours after the visit."""
        assert self._status_passes is not None
        appointment = self._ensure_meeting(environment, appointment, ehr_user_id=ehr_user_id, department=department)
        now = self._clock.now()
        end = appointment.end_utc or (appointment.start_utc or now) + timedelta(hours=1)
        token = self._status_passes.issue(appointment.key, ehr_user_id, max(end, now) + timedelta(hours=2))
        return Redirect(f"{self._public}/api/visits/{token}/status")

    def _patient_to_join_page(self, environment: EnvironmentConfig, appointment: Appointment,
                              *, department: str | None, device_test: bool = False) -> Redirect:
        """The join page of the visit's meeting; at its device test for the device-test record's launch."""
        appointment = self._ensure_meeting(environment, appointment, department=department)
        anchor = "#device-test" if device_test else ""
        return Redirect(f"{self._public}/api/join/{self._patient_link(appointment, self._clock.now())}{anchor}")

    def _ensure_meeting(self, environment: EnvironmentConfig, appointment: Appointment, *,
                        ehr_user_id: str | None = None, department: str | None = None) -> Appointment:
        """The visit with its meeting; a meeting created now is subscribed to after the redirect (follow-up)."""
        new_meeting = appointment.meeting is None
        appointment = self._meetings.ensure(environment, appointment, ehr_user_id=ehr_user_id, department=department,
                                            watch=self._followup is None)
        if self._followup is not None and new_meeting:
            self._followup.after_launch(appointment, click=None, watch=True, source=environment.presence_source)
        return appointment

    def _needs_signin(self, environment: EnvironmentConfig, ehr_user_id: str) -> bool:
        if not environment.provider_signin or self._signin is None or self._users is None:
            return False
        return self._users.get(environment.id, ehr_user_id) is None

    def _start_signin(self, environment: EnvironmentConfig, appointment: Appointment, ehr_user_id: str, *,
                      department: str | None, attempt: str, binding: str, correlation_id: str | None) -> Redirect:
        """Store a pending sign-in and send the browser to Entra ID's authorize endpoint."""
        assert self._signin is not None and self._signin_states is not None
        if appointment.etag is None:  # the sign-in's return reads the visit by its key: store it now
            try:
                appointment = self._appointments.create(appointment)
            except AlreadyExists:
                pass
        state = new_state()
        auth_uri, flow = self._signin.begin(state=state, redirect_uri=self._public + SIGNIN_PATH)
        self._signin_states.create(SignInState(
            state=state, environment_id=environment.id, ehr_user_id=ehr_user_id, appointment_key=appointment.key,
            department=department, browser_binding=binding, attempt=attempt, flow=flow,
            created_utc=self._wall.now()))
        log.info("provider sign-in begun environment=%s correlation=%s", environment.id, correlation_id)
        return Redirect(auth_uri)

    def complete_signin(self, query: Mapping[str, str], browser_cookie: str | None,
                        *, correlation_id: str | None = None) -> Redirect:
        """``GET /api/launch/signin``: finish the clinician's sign-in, remember EHR user -> Entra object ID, then
        continue into the visit's meeting (organized by the clinician when it is created now).

        Raises:
            LaunchError: ``STATE_*``, ``SIGNIN_FAILED``, ``LAUNCH_EXPIRED``, ``ENVIRONMENT_NOT_APPROVED``,
                ``APPOINTMENT_*``, ``GRAPH_*``...
            StoreUnavailable: Cosmos DB is down.
        """
        if self._signin is None or self._signin_states is None or self._users is None:
            raise LaunchError("SIGNIN_FAILED", "Provider sign-in is not configured (GRAPH_* settings).")
        state = query.get("state") or ""
        if not state:
            raise LaunchError("STATE_MISSING")
        pending = self._signin_states.get(state)
        if pending is None:
            raise LaunchError("STATE_INVALID")
        if pending.expired(self._wall.now()):
            self._signin_states.consume(pending)
            raise LaunchError("STATE_INVALID")
        if not browser_cookie or not hmac.compare_digest(browser_binding(browser_cookie), pending.browser_binding):
            raise LaunchError("STATE_BROWSER_MISMATCH")
        if not self._signin_states.consume(pending):
            raise LaunchError("STATE_INVALID")
        environment = self._environments.get(pending.environment_id)
        if environment is None:
            raise LaunchError("ENVIRONMENT_NOT_CONFIGURED")
        environment = self._launchable(environment, None)
        oid = self._signin.finish(pending.flow, query)
        self._users.put(UserMapping(environment.id, pending.ehr_user_id, oid, self._wall.now()))
        log.info("provider sign-in stored environment=%s correlation=%s", environment.id, correlation_id)
        appointment = self._appointments.get(pending.appointment_key)
        if appointment is None:
            raise LaunchError("APPOINTMENT_NOT_FOUND")
        if appointment.status in ENDED_STATUSES:
            raise LaunchError("APPOINTMENT_CANCELLED")
        return self._provider_into_meeting(environment, appointment, pending.ehr_user_id,
                                           department=pending.department, attempt=pending.attempt,
                                           binding=pending.browser_binding, correlation_id=correlation_id)

    # ---- Epic encrypted link -----------------------------------------------------------------------
    def begin_encrypted(self, kind: LaunchKind, query: Mapping[str, str], browser_cookie: str | None,
                        *, correlation_id: str | None = None, frame: FrameContext | None = None) -> Redirect:
        """An encrypted-link launch: ``?env={environmentId}&data={encrypted}`` (docs/launch.md "Encrypted link").

        The link is decrypted with the environment's key, its timestamp checked, and claimed once; the visit is
        looked up by its CSN (it must be known from HL7: there is no EHR token to read FHIR with).

        Raises:
            LaunchError: ``ENVIRONMENT_NOT_CONFIGURED``, ``LAUNCH_MODE_MISMATCH``, ``ENVIRONMENT_NOT_APPROVED``,
                ``LAUNCH_LINK_INVALID``, ``LAUNCH_EXPIRED`` (stale or replayed), ``WRONG_LAUNCH_KIND``,
                ``APPOINTMENT_*``, ``GRAPH_*``...
            StoreUnavailable: Cosmos DB is down.
        """
        environment = self._named_environment(query.get("env"))
        if environment is None:
            raise LaunchError("ENVIRONMENT_NOT_CONFIGURED", "An encrypted launch URL must name its environment "
                                                            "(env=...). Copy it from the integration records.")
        key = self._encrypted_keys(environment.id) if self._encrypted_keys else None
        if environment.launch_mode != "encrypted" or key is None or self._used_links is None:
            raise LaunchError("LAUNCH_MODE_MISMATCH")
        environment = self._launchable(environment, None)
        check_frame(frame, environment.frame_origins, self._own_origin)
        now = self._wall.now()
        max_age = timedelta(seconds=environment.encrypted_max_age_seconds)
        link = decrypt_link(query.get("data") or "", key=key, fields=environment.encrypted_fields, now=now,
                            max_age=max_age)
        if (link.user_type and link.user_type != kind) or (kind == "provider" and not link.user_id):
            raise LaunchError("WRONG_LAUNCH_KIND", "The encrypted link is not a link of this kind: provider links "
                                                   "carry the EHR user ID, patient links do not say provider.")
        if not self._used_links.claim(link.digest, expires=link.issued_utc + max_age + FUTURE_SKEW, now=now):
            log.warning("encrypted launch replayed environment=%s correlation=%s", environment.id, correlation_id)
            raise LaunchError("LAUNCH_EXPIRED", "This encrypted link was already used (links are single use).")
        if not link.csn:
            raise LaunchError("APPOINTMENT_NOT_FOUND", "The encrypted link names no CSN: add the CSN to the "
                                                       "link's payload.")
        appointment = self._appointments.get(appointment_key(environment.id, link.csn))
        if appointment is None:
            raise LaunchError("APPOINTMENT_NOT_FOUND", "The visit of this encrypted link is unknown: encrypted "
                                                       "launches need the appointment from the HL7 feed first.")
        if appointment.status in ENDED_STATUSES:
            raise LaunchError("APPOINTMENT_CANCELLED")
        hint = clean_hint(query.get("sessionId"))
        if hint and hint != link.csn:
            log.warning("launch sessionId hint differs from the encrypted link environment=%s correlation=%s; "
                        "using the link", environment.id, correlation_id)
        department = link.department_id or clean_hint(query.get("departmentId"))
        log.info("encrypted launch accepted kind=%s environment=%s correlation=%s", kind, environment.id,
                 correlation_id)
        if kind == "patient":
            return self._patient_to_join_page(environment, appointment, department=department)
        assert link.user_id is not None
        cookie_value = browser_cookie if browser_cookie and _COOKIE_VALUE.fullmatch(browser_cookie) else None
        cookie_value = cookie_value or secrets.token_urlsafe(32)
        result = self._provider_into_meeting(
            environment, appointment, link.user_id, department=department, attempt="link-" + link.digest[:32],
            binding=browser_binding(cookie_value), correlation_id=correlation_id, frame=frame)
        return dataclasses.replace(result, cookies=(self._cookie(cookie_value, frame),))

    def _cookie(self, value: str, frame: FrameContext | None) -> Cookie:
        """The ``vv_launch`` cookie binding launch states to this browser.

        Partitioned (``SameSite=None; Secure; Partitioned``) on https, so it also works inside Epic's cross-site
        frames where third-party cookies are blocked; on the local http runner only when the request is framed
        (browsers treat loopback http as secure, HTTP clients do not send a Secure cookie over http).
        """
        partitioned = self._secure or (frame is not None and frame.framed)
        return Cookie(LAUNCH_COOKIE, value, LAUNCH_STATE_TTL_SECONDS, LAUNCH_COOKIE_PATH, self._secure,
                      partitioned=partitioned)

    # ---- environment checks ------------------------------------------------------------------------
    def _named_environment(self, env_id: str | None) -> EnvironmentConfig | None:
        """The environment named by the launch URL's ``env`` parameter, or ``None`` when absent.

        Raises:
            LaunchError: ``ENVIRONMENT_NOT_CONFIGURED`` when it names an unknown environment.
        """
        if not env_id:
            return None
        environment = self._environments.get(env_id) if _ENV_ID.fullmatch(env_id) else None
        if environment is None:
            raise LaunchError("ENVIRONMENT_NOT_CONFIGURED")
        return environment

    def _launchable(self, environment: EnvironmentConfig, iss: str | None) -> EnvironmentConfig:
        """``environment`` when :func:`check_launchable` passes; a refusal is checked once more against the stored
        configuration (the cached one may predate an approval or an enable made in the portal a moment ago)."""
        try:
            check_launchable(environment, iss)
            return environment
        except LaunchError:
            fresh = self._environments.get(environment.id, fresh=True)
            if fresh is None:
                raise
            check_launchable(fresh, iss)
            return fresh

    def _unknown_iss(self, iss: str, named: EnvironmentConfig | None) -> LaunchError:
        """The most helpful error for an ``iss`` that is on no allowlist (database look-ups only, no network).

        ``FHIR_VERSION_MISMATCH`` when the same base URL with another FHIR version (DSTU2 / STU3 / R4) is
        registered; ``TENANT_CONFIG_NOT_FOUND`` never applies here (the iss is unknown everywhere); else
        ``ISS_NOT_ALLOWED`` (with a trailing-slash hint when that is the only difference).
        """
        match = _FHIR_VERSION.match(iss)
        if match:
            for version in ("R4", "STU3", "DSTU2"):
                if version.lower() == match.group("version").lower():
                    continue
                if self._environments.find_by_fhir_base_url(match.group("prefix") + version) is not None:
                    return LaunchError("FHIR_VERSION_MISMATCH",
                                       f"The launch's FHIR base URL ends in /{match.group('version')} while /{version} "
                                       f"is registered. {CATALOG['FHIR_VERSION_MISMATCH'].admin_hint}")
        if iss.endswith("/") and self._environments.find_by_fhir_base_url(iss.rstrip("/")) is not None:
            return LaunchError("ISS_NOT_ALLOWED", "The launch's FHIR base URL differs from the registered one only "
                                                  "by a trailing slash; register it exactly as Epic sends it.")
        return LaunchError("ISS_NOT_ALLOWED")

    def _take_state(self, state: str, browser_cookie: str | None, frame: FrameContext | None = None) -> LaunchState:
        """Check and consume the launch state of a callback (single use, bound to the browser), in one store
        round trip (:meth:`LaunchStateRepository.take`)."""
        if not state:
            raise LaunchError("STATE_MISSING")
        binding = browser_binding(browser_cookie) if browser_cookie else ""
        taken = self._states.take(state, binding, now=self._wall.now())
        if taken == "other_browser" and not browser_cookie and frame is not None and frame.framed:
            raise LaunchError("COOKIES_BLOCKED")  # not consumed either: the launch can be retried top-level
        if taken == "other_browser":
            # Not consumed: a cross-site request cannot burn the real browser's launch.
            raise LaunchError("STATE_BROWSER_MISMATCH")
        if isinstance(taken, str) or taken.expired(self._wall.now()):
            raise LaunchError("STATE_INVALID")
        return taken

    def _environment_of(self, launch_state: LaunchState) -> EnvironmentConfig:
        environment = self._environments.get(launch_state.environment_id)
        if environment is None or launch_state.iss not in environment.fhir_base_urls:
            raise LaunchError("ISS_NOT_ALLOWED", "The environment of this launch was removed or no longer lists "
                                                 "its FHIR base URL.")
        return self._launchable(environment, launch_state.iss)

    def _appointment_for(self, environment: EnvironmentConfig, fhir: FhirAppointment,
                         ehr_user_id: str | None) -> Appointment:
        """The stored appointment of the CSN, or a minimal one made from the FHIR Appointment and not stored yet
        (no ETag): :meth:`MeetingService.ensure` creates it with its meeting, in one write."""
        assert fhir.csn is not None
        key = appointment_key(environment.id, fhir.csn)
        existing = self._appointments.get(key)
        if existing is None:
            if fhir.status in ("cancelled", "entered-in-error", "noshow"):
                raise LaunchError("APPOINTMENT_CANCELLED")
            # Not stored here: the meeting service stores it together with its meeting (one write).
            return minimal_appointment(environment, fhir, ehr_user_id)
        if existing.status in ENDED_STATUSES:
            raise LaunchError("APPOINTMENT_CANCELLED")
        return self._with_fhir_times(existing, minimal_appointment(environment, fhir, ehr_user_id))

    def _with_fhir_times(self, existing: Appointment, from_fhir: Appointment) -> Appointment:
        """A visit known only from launches (no HL7 message applied) takes a new time read from FHIR; the
        ``meeting_times`` timer then moves its meeting. HL7-fed visits move with S13/S14 only."""
        if existing.order_key or from_fhir.start_utc is None or from_fhir.end_utc is None:
            return existing
        if (existing.start_utc, existing.end_utc) == (from_fhir.start_utc, from_fhir.end_utc):
            return existing
        try:
            return self._appointments.replace(dataclasses.replace(
                existing, start_utc=from_fhir.start_utc, end_utc=from_fhir.end_utc,
                duration_minutes=from_fhir.duration_minutes))
        except ConcurrencyConflict:
            return self._appointments.get(existing.key) or existing

    def _patient_link(self, appointment: Appointment, now: datetime) -> str:
        """A join-page token for ``appointment`` (its link ID is created and stored when it has none)."""
        expires = (appointment.end_utc or now) + LINK_GRACE
        expires = max(expires, now + LINK_GRACE)
        current = appointment
        for _ in range(3):
            if current.link_id:
                break
            try:
                current = self._appointments.replace(
                    dataclasses.replace(current, link_id=secrets.token_urlsafe(16)))
            except ConcurrencyConflict:
                fresh = self._appointments.get(current.key)
                if fresh is None:
                    raise LaunchError("APPOINTMENT_NOT_FOUND") from None
                current = fresh
        if not current.link_id:
            raise LaunchError("STORE_UNAVAILABLE", "The appointment kept changing while its join link was made.")
        self._links.put(current.link_id, current.key, expires=expires, now=now)
        return self._join_links.token(current.link_id, expires)


def check_launchable(environment: EnvironmentConfig, iss: str | None) -> None:
    """Refuse a launch into a disabled environment, or against a FHIR base URL without a current approval
    (never approved, sent back, or changed since: kind or client ID). ``iss`` ``None`` (encrypted links, the
    sign-in return) needs at least one approved URL of the environment.

    Raises:
        LaunchError: ``ENVIRONMENT_DISABLED``, ``ENVIRONMENT_NOT_APPROVED``.
    """
    if environment.disabled:
        raise LaunchError("ENVIRONMENT_DISABLED")
    approved = environment.url_approved(iss) if iss is not None else environment.any_url_approved()
    if not approved:
        raise LaunchError("ENVIRONMENT_NOT_APPROVED")


def check_launch_kind(kind: LaunchKind, identity: Identity) -> None:
    """Refuse a provider launch by a non-Practitioner and a patient launch by a Practitioner.

    Raises:
        LaunchError: ``WRONG_LAUNCH_KIND``.
    """
    allowed = PROVIDER_USER_TYPES if kind == "provider" else PATIENT_USER_TYPES
    if identity.resource_type not in allowed:
        raise LaunchError("WRONG_LAUNCH_KIND")


def minimal_appointment(environment: EnvironmentConfig, fhir: FhirAppointment,
                        ehr_user_id: str | None) -> Appointment:
    """An appointment record made from the FHIR Appointment when HL7 has not announced the visit yet.

    Status ``booked``; start/end from FHIR (end = start + ``minutesDuration`` when only that is given);
    ``order_key`` empty, so the first HL7 message for the visit is applied over it.
    """
    assert fhir.csn is not None
    end = fhir.end
    if end is None and fhir.start is not None and fhir.minutes_duration:
        end = fhir.start + timedelta(minutes=fhir.minutes_duration)
    duration = fhir.minutes_duration
    if duration is None and fhir.start is not None and end is not None:
        duration = int((end - fhir.start).total_seconds() // 60)
    return Appointment(
        environment_id=environment.id,
        appointment_id=fhir.csn,
        status="booked",
        start_utc=fhir.start,
        end_utc=end,
        duration_minutes=duration,
        source_time_zone=environment.time_zone,
        provider_ehr_id=ehr_user_id,
    )
