"""The checks of a launch's inputs that need no store and no network: what a launch URL, a callback and a
token response must satisfy before anything is stored or a join link is given.

- :func:`launch_parameters`: ``iss`` and ``launch`` of ``GET /api/launch/provider|patient`` (absent, blank,
  absurdly long or odd values are refused before a launch state is stored or a cookie set).
- :func:`check_callback_issuer`: RFC 9207 — the authorization response's ``iss``, when there is one, must name
  the authorization server this launch was sent to; when that server promises one, it must be there.
- :func:`check_patient_context`: a patient launch gets a join link only when the token's ``patient`` is a
  participant of the Appointment the token's context names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lib.ehr.fhir_appointments import FhirAppointment
from lib.smart.discovery import SmartConfiguration
from lib.smart.errors import LaunchError
from lib.smart.token import LaunchContext

#: The longest ``launch`` accepted. Epic's launch tokens may be JWTs (a reason Epic recommends POST to the
#: authorize endpoint), a kilobyte or two; Azure Functions refuses URLs past 4 KB anyway.
MAX_LAUNCH_LENGTH = 4096
#: The longest ``iss`` looked up (a FHIR base URL; registered ones are far shorter).
MAX_ISS_LENGTH = 2048
#: A launch token is opaque but printable: visible ASCII, no spaces or control characters.
_LAUNCH_CHARS = re.compile(r"[\x21-\x7e]+")


def launch_parameters(query: Mapping[str, str]) -> tuple[str, str]:
    """``(iss, launch)`` of a SMART launch URL, checked for shape only (the allowlist comes next).

    Raises:
        LaunchError: ``ISS_MISSING`` (absent or blank), ``ISS_NOT_ALLOWED`` (longer than
            :data:`MAX_ISS_LENGTH`), ``LAUNCH_MISSING`` (absent), ``LAUNCH_INVALID`` (blank, longer than
            :data:`MAX_LAUNCH_LENGTH`, or not visible ASCII).
    """
    iss = query.get("iss") or ""
    launch = query.get("launch")
    if not iss.strip():
        raise LaunchError("ISS_MISSING")
    if len(iss) > MAX_ISS_LENGTH:
        raise LaunchError("ISS_NOT_ALLOWED", f"The launch's iss is longer than {MAX_ISS_LENGTH} characters.")
    if launch is None or launch == "":
        raise LaunchError("LAUNCH_MISSING")
    if len(launch) > MAX_LAUNCH_LENGTH or not _LAUNCH_CHARS.fullmatch(launch):
        raise LaunchError("LAUNCH_INVALID")
    return iss, launch


def check_callback_issuer(callback_iss: str | None, config: SmartConfiguration, launch_iss: str) -> None:
    """RFC 9207 §2.4: refuse an authorization response whose ``iss`` is not the launch's authorization server.

    Accepted values: the discovered ``issuer`` (RFC 9207's identifier), and the launch's FHIR base URL (what a
    SMART server that puts its ``iss`` on the callback sends). An absent ``iss`` is accepted unless the
    discovery document says ``authorization_response_iss_parameter_supported``.

    Raises:
        LaunchError: ``CALLBACK_ISS_MISMATCH``.
    """
    if callback_iss is None:
        if config.response_iss_required:
            raise LaunchError("CALLBACK_ISS_MISMATCH", "The EHR promises an 'iss' on its authorization responses "
                                                       "(authorization_response_iss_parameter_supported) and this "
                                                       "callback had none.")
        return
    expected = {launch_iss}
    if config.issuer:
        expected.add(config.issuer)
    if callback_iss not in expected:
        raise LaunchError("CALLBACK_ISS_MISMATCH")


def check_patient_context(context: LaunchContext, appointment: FhirAppointment) -> None:
    """A patient launch's token must name a patient, and that patient must be in the Appointment.

    Raises:
        LaunchError: ``PATIENT_CONTEXT_MISSING`` (no usable ``patient``), ``PATIENT_MISMATCH`` (the patient is
            not a participant of the Appointment, or the Appointment lists none).
    """
    patient = context.patient_id()
    if patient is None:
        raise LaunchError("PATIENT_CONTEXT_MISSING")
    if patient not in appointment.patient_ids:
        raise LaunchError("PATIENT_MISMATCH")
