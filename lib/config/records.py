"""The integration records the Epic analyst copies into Epic once an environment is approved
(docs/portal.md "Integration records"; launch URL grammar: docs/launch.md).

Each record names the Epic fields it fills. Values are built from ``PUBLIC_BASE_URL`` and the environment only;
nothing secret is in them. Records exist only when at least one FHIR base URL of the environment is approved:
before that a launch would be refused anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.config.approvals import approval_callback_url
from lib.models import EnvironmentConfig
from lib.smart.authorize import callback_url

DEPARTMENT_TOKEN = "%PERFDEPID;;; ; ;;NONE;%"  # noqa: S105 (an Epic substitution token)
HL7_EVENTS = "SIU^S12, S13, S14, S15, S17, S26"


@dataclass(frozen=True)
class RecordField:
    """One Epic field and the value to enter, with a note when the value needs care."""

    epic_field: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class IntegrationRecord:
    """One record to copy into Epic.

    Attributes:
        key: stable ID (``provider-launch``...).
        title: what it is for.
        where: the Epic record it fills (FDI record, Connection Hub app, interface).
        fields: the fields and values.
    """

    key: str
    title: str
    where: str
    fields: tuple[RecordField, ...]


def jwks_url(public_base_url: str, kind: str) -> str:
    """The JWK Set URL Epic must know for environments of ``kind``."""
    base = public_base_url.rstrip("/")
    return f"{base}/api/.well-known/jwks/production.json" if kind == "production" else \
        f"{base}/api/.well-known/jwks.json"


def records_for(config: EnvironmentConfig, public_base_url: str) -> list[IntegrationRecord]:
    """Every record of ``config`` (empty when no FHIR base URL is approved)."""
    if not config.any_url_approved():
        return []
    app = public_base_url.rstrip("/")
    env = config.id
    provider_url, patient_url = f"{app}/api/launch/provider", f"{app}/api/launch/patient"
    client = RecordField("Client ID (Connection Hub app)", config.epic_client_id,
                         "the app's " + ("Production" if config.kind == "production" else "Non-Production")
                         + " client ID in this Epic environment")

    def launch(key: str, title: str, url: str, tokens: str, extra: tuple[RecordField, ...] = ()) -> IntegrationRecord:
        return IntegrationRecord(key, title, "FDI record (SMART on FHIR web launch)", (
            RecordField("Launch type", "SMART on FHIR (EHR launch)"), client,
            RecordField("Launch URL", url, "Epic adds iss and launch itself"),
            RecordField("Context tokens (query string)", tokens, "copy exactly: the tokens are substituted by Epic"),
            *extra))

    provider_tokens = f"env={env}&sessionId=%CSN%&departmentId={DEPARTMENT_TOKEN}"
    records = [
        launch("provider-launch", "Provider launch (Hyperspace, Haiku, Canto: Begin virtual visit)", provider_url,
               provider_tokens),
        launch("patient-launch", "Patient launch (MyChart)", patient_url, f"env={env}&sessionId=%CSN%"),
        launch("device-test", "Device test (MyChart: test your camera, microphone and speaker)", patient_url,
               f"env={env}&sessionId=%CSN%&mode=devicetest",
               (RecordField("Device test context token", "mode=devicetest",
                            "opens the patient's page at its device test; results are written back to Epic"),)),
        launch("group-provider-launch", "Group visit: provider launch", provider_url,
               f"env={env}&sessionId=%CONFERENCEID%&departmentId={DEPARTMENT_TOKEN}",
               (RecordField("Conference ID field (HL7)", config.conference_id_field or "(not set)",
                            "set it in the environment so that the HL7 feed groups the visits"),)),
        launch("group-patient-launch", "Group visit: patient launch", patient_url,
               f"env={env}&sessionId=%CONFERENCEID%"),
        IntegrationRecord("direct-sms", "Direct SMS (appointment feed that drives our texts)",
                          "Outgoing HL7 interface (SIU)", (
                              RecordField("Destination", f"POST {app}/api/hl7/{env}"),
                              RecordField("Message types", HL7_EVENTS),
                              RecordField("Patient phone", "PID-13 (mobile), PID-15 language (optional)"),
                              RecordField("Signature", "X-HL7-Signature header (JWS), key of the certificate "
                                                       "uploaded in this portal", "docs/hl7-intake.md"),
                              RecordField("Processing ID (MSH-11)", "P" if config.kind == "production" else "T"))),
        IntegrationRecord("sms-configuration", "SMS configuration", "Epic appointment reminder settings", (
            RecordField("Sender number", config.sms.sender or "(no number linked yet)"),
            RecordField("Texts sent by this connector", _sms_summary(config),
                        "turn off Epic's own texts for the same events, or patients get two"),
            RecordField("Quiet hours (patient's local time)", " to ".join(config.sms.quiet_hours)))),
        IntegrationRecord("jwks", "JWK Set URL (our public keys)", "Connection Hub app: JWK Set URL", (
            RecordField("Production JWK Set URL" if config.kind == "production" else "Non-Production JWK Set URL",
                        jwks_url(app, config.kind)),)),
        IntegrationRecord("redirect-uris", "Redirect URIs", "Connection Hub app: Redirect URIs", (
            RecordField("Launch redirect URI", callback_url(app)),
            RecordField("Approval redirect URI", approval_callback_url(app),
                        "used once per FHIR base URL, when the analyst approves it"))),
        IntegrationRecord("hl7-endpoint", "HL7 endpoint", "Interface engine connection", (
            RecordField("URL", f"{app}/api/hl7/{env}"),
            RecordField("Method and content type", "POST, application/hl7-v2+er7 (UTF-8 or MSH-18 charset)"),
            RecordField("Answer", "HL7 ACK (MSA AA / AE / AR with the reason)"))),
    ]
    return records


def _sms_summary(config: EnvironmentConfig) -> str:
    sms = config.sms
    if not sms.enabled:
        return "none (SMS is off for this environment)"
    parts = [name for name, on in (("booked", sms.confirm_booked), ("changed", sms.confirm_changed),
                                   ("cancelled", sms.confirm_cancelled)) if on]
    reminders = ", ".join(_offset(m) for m in sms.reminder_offsets_minutes) or "none"
    return f"confirmations: {', '.join(parts) or 'none'}; reminders: {reminders} before"


def _offset(minutes: int) -> str:
    if minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"
