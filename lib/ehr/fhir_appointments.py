"""SMART App Launch step 6, "Access FHIR API" (STU 2.2, app-launch.html#step-6-access-fhir-api), for the one
read a launch needs: ``GET {iss}/Appointment/{id}`` with the launch's bearer token, to learn the visit's CSN.

Epic puts the CSN in ``Appointment.identifier`` under an OID ending in ``.7.3.698084.8`` below the
organization's root ``urn:oid:1.2.840.114350.1.13.<org>.<env>`` (the sandbox uses
``urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8``). Organizations differ, so the systems are the environment's
``csn_identifier_systems`` (set in the configuration portal): an entry starting with ``.`` is an OID suffix
below Epic's root, any other must equal the system exactly. An identifier whose ``type.text`` is ``CSN`` is
the last resort.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.models import EPIC_CSN_OID_SUFFIX
from lib.smart.errors import LaunchError
from lib.smart.token import busy_error, logical_id
from lib.smart.transport import HttpClient, TransportError, json_or_none

EPIC_OID_ROOT = "urn:oid:1.2.840.114350."
CSN_OID_SUFFIX = EPIC_CSN_OID_SUFFIX


@dataclass(frozen=True)
class FhirAppointment:
    """What we keep from a FHIR Appointment: no participant names, no reason, no comment.

    Attributes:
        fhir_id: the FHIR logical ID.
        csn: the Epic contact serial number (our appointment ID), or ``None`` when absent.
        status: FHIR status (``booked``, ``arrived``, ``cancelled``...).
        start, end: aware instants, when given.
        minutes_duration: ``minutesDuration``, when given.
        patient_ids: FHIR logical IDs of the Patient participants (``participant.actor`` references); used
            only to check a patient launch's context, never stored.
    """

    fhir_id: str
    csn: str | None
    status: str | None
    start: datetime | None
    end: datetime | None
    minutes_duration: int | None
    patient_ids: tuple[str, ...] = ()


def system_matches(system: str, configured: str) -> bool:
    """Whether identifier ``system`` is the configured CSN system (``.``-suffix below Epic's root, or exact)."""
    if configured.startswith("."):
        return system.startswith(EPIC_OID_ROOT) and system.endswith(configured)
    return system == configured


def csn_of(resource: dict[str, Any], systems: tuple[str, ...] = (CSN_OID_SUFFIX,)) -> str | None:
    """The CSN in a FHIR Appointment's identifiers: the first of ``systems`` (in their order) that an identifier
    carries, else an identifier whose type text is CSN."""
    identifiers = [i for i in resource.get("identifier") or () if isinstance(i, dict)]
    for configured in systems:
        for ident in identifiers:
            system, value = ident.get("system") or "", ident.get("value")
            if isinstance(value, str) and value and isinstance(system, str) and system_matches(system, configured):
                return value
    for ident in identifiers:
        text = ((ident.get("type") or {}).get("text") or "") if isinstance(ident.get("type"), dict) else ""
        if text.strip().upper() == "CSN" and isinstance(ident.get("value"), str) and ident["value"]:
            return ident["value"]
    return None


def parse_appointment(resource: Any, csn_systems: tuple[str, ...] = (CSN_OID_SUFFIX,)) -> FhirAppointment:
    """Build a :class:`FhirAppointment` from a FHIR R4 Appointment resource (CSN from ``csn_systems``).

    Raises:
        LaunchError: ``APPOINTMENT_NOT_FOUND`` when ``resource`` is not an Appointment.
    """
    if not isinstance(resource, dict) or resource.get("resourceType") != "Appointment" or not resource.get("id"):
        raise LaunchError("APPOINTMENT_NOT_FOUND", "The EHR did not return a FHIR Appointment.")
    duration = resource.get("minutesDuration")
    return FhirAppointment(
        fhir_id=str(resource["id"]),
        csn=csn_of(resource, csn_systems),
        status=resource.get("status") if isinstance(resource.get("status"), str) else None,
        start=_instant(resource.get("start")),
        end=_instant(resource.get("end")),
        minutes_duration=duration if isinstance(duration, int) and not isinstance(duration, bool) else None,
        patient_ids=_patient_ids(resource),
    )


def _patient_ids(resource: dict[str, Any]) -> tuple[str, ...]:
    """The logical IDs of the Appointment's Patient participants (``actor.reference`` ``Patient/{id}``, or a
    bare ID with ``actor.type`` ``Patient``)."""
    found: list[str] = []
    for participant in resource.get("participant") or ():
        actor = participant.get("actor") if isinstance(participant, dict) else None
        reference = actor.get("reference") if isinstance(actor, dict) else None
        if not isinstance(reference, str):
            continue
        patient = logical_id(reference, "Patient", plain_allowed=actor.get("type") == "Patient")
        if patient and patient not in found:
            found.append(patient)
    return tuple(found)


def read_appointment(
    http: HttpClient, *, fhir_base_url: str, appointment_id: str, access_token: str,
    csn_systems: tuple[str, ...] = (CSN_OID_SUFFIX,),
) -> FhirAppointment:
    """``GET {fhir_base_url}/Appointment/{appointment_id}`` with the launch's access token; the CSN is read from
    the first of ``csn_systems`` present (the environment's ``csn_identifier_systems``).

    Raises:
        LaunchError: ``APPOINTMENT_NOT_FOUND`` (404/410, or not an Appointment), ``EPIC_OAUTH_ERROR``
            (401/403: the token does not allow the read), ``EPIC_THROTTLED`` (429) or ``EPIC_UNAVAILABLE`` (no
            answer, 5xx), both with the ``Retry-After`` wait.
    """
    url = f"{fhir_base_url.rstrip('/')}/Appointment/{urllib.parse.quote(appointment_id, safe='')}"
    try:
        response = http.get(url, headers={"Authorization": f"Bearer {access_token}",
                                          "Accept": "application/fhir+json"})
    except TransportError as exc:
        raise LaunchError("EPIC_UNAVAILABLE", f"The FHIR server is unreachable ({exc.kind}).") from exc
    if response.status_code in (404, 410):
        raise LaunchError("APPOINTMENT_NOT_FOUND", "The EHR has no FHIR Appointment with the launch's ID.")
    if response.status_code in (401, 403):
        raise LaunchError("EPIC_OAUTH_ERROR", f"The FHIR server refused the Appointment read (HTTP "
                                              f"{response.status_code}): add Appointment.Read (R4) to the app's "
                                              "APIs in Epic.")
    if response.status_code >= 500 or response.status_code == 429:
        raise busy_error(response, "The FHIR server")
    if response.status_code != 200:
        raise LaunchError("EPIC_UNAVAILABLE", f"The FHIR server answered HTTP {response.status_code}.")
    return parse_appointment(json_or_none(response), csn_systems)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
