"""The environment form of the portal: one field per editable setting of :class:`lib.models.EnvironmentConfig`,
rendered from the setting's type (so a setting another part of the app adds appears here at once), and the
form's text turned back into the typed body the JSON API takes (docs/portal.md "Environments").

Widgets by type: ``bool`` a checkbox, ``int`` a number, a ``Literal`` radio buttons, ``tuple[str, ...]`` a text
area with one value per line, ``dict[str, str]`` a text area with ``key = value`` lines, any other text field.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Any, Literal

from lib.config.environments import OWN_ACTIONS, Problem
from lib.models import EnvironmentConfig

Widget = Literal["text", "number", "checkbox", "radios", "lines", "pairs"]


@dataclass(frozen=True)
class FieldCopy:
    """Label and hint of a known setting."""

    label: str
    hint: str = ""


#: Known settings in the order the form shows them; others follow under "More settings".
COPY: dict[str, FieldCopy] = {
    "id": FieldCopy("Environment ID", "Lowercase letters, digits and '-', e.g. contoso-tst. It is part of the HL7 "
                                      "endpoint and the launch URLs and cannot be changed later."),
    "kind": FieldCopy("Epic environment", "Test (non-production) or production. Each FHIR base URL of this "
                                          "environment is tagged with it."),
    "display_name": FieldCopy("Organization name", "As patients know it; it appears in texts and pages."),
    "fhir_base_urls": FieldCopy("FHIR base URLs", "One per line, exactly as Epic sends it as iss, ending with "
                                                  "/api/FHIR/R4 (or /api/FHIR/DSTU2). Each is checked now: https, "
                                                  "the suffix, SMART discovery reachable, not used elsewhere."),
    "approvers": FieldCopy("Approver of each FHIR base URL", "One per line: URL = the Epic analyst's Microsoft "
                                                             "365 sign-in name, e.g. https://.../api/FHIR/R4 = "
                                                             "analyst@contoso.example"),
    "epic_client_id": FieldCopy("Epic client ID", "Our app's client ID in this Epic environment (Connection Hub). "
                                "Changing it on an approved environment stops every launch until the approver "
                                "approves again."),
    "launch_mode": FieldCopy("Launch mode", "SMART on FHIR EHR launch, or Epic's encrypted link."),
    "time_zone": FieldCopy("Time zone", "IANA name such as America/Chicago: HL7 times without an offset, texts."),
    "default_region": FieldCopy("Phone region", "ISO 3166 code for phone numbers without a country code, e.g. US."),
    "csn_identifier_systems": FieldCopy("CSN identifier systems", "Where Appointment.identifier carries the CSN, "
                                                                  "one per line, tried in order: an OID suffix such "
                                                                  "as .7.3.698084.8, or a whole system URI."),
    "conference_id_field": FieldCopy("Conference ID field (group visits)", "HL7 field such as SCH-4 or ZCH-3.1; "
                                                                           "empty when there are no group visits."),
    "department_organizers": FieldCopy("Department organizers", "One per line: Epic department ID = the Entra "
                                                                "object ID of the account that organizes its "
                                                                "meetings."),
    "fallback_organizer_id": FieldCopy("Fallback organizer", "Entra object ID organizing meetings when neither "
                                                             "the clinician nor the department has one."),
    "provider_signin": FieldCopy("Clinicians sign in to Microsoft 365 once", "Then they organize their own "
                                                                             "meetings."),
    "appointment_id_order": FieldCopy("Appointment ID fields (HL7)", "One per line, in order of preference."),
    "writeback_vendor_name": FieldCopy("Vendor name sent to Epic", "VendorName of SetExternalConnectionStatus."),
    "writeback_status_codes": FieldCopy("Write-back status codes", "One per line: event = the ConnectionStatus code "
                                                                   "Epic expects, e.g. connected = 1. Events: "
                                                                   "connected, disconnected, device_test_passed, "
                                                                   "device_test_failed; an event not listed uses "
                                                                   "the default (1, 2, 3, 4)."),
    "writeback_retry_horizon_minutes": FieldCopy("Write-back retry horizon (minutes)", "How long an event is "
                                                                                       "retried while Epic is down "
                                                                                       "(5 to 10080; default 1440, a "
                                                                                       "day)."),
    "hl7_auth": FieldCopy("HL7 request authentication", "jws: signed with the uploaded certificate (required "
                                                        "for production)."),
    "client_assertion_alg": FieldCopy("Client assertion algorithm", "RS384 or ES384."),
    "encrypted_fields": FieldCopy("Encrypted link field names", "One per line: our name = the name Epic sends."),
    "encrypted_max_age_seconds": FieldCopy("Encrypted link maximum age (seconds)", "How old an encrypted link's "
                                                                                  "timestamp may be when it "
                                                                                  "arrives (1 to 3600; default "
                                                                                  "300)."),
    "presence_source": FieldCopy("Meeting presence source", "auto: live from Teams call events and the call "
                                                             "record, or the meeting's attendance report after the "
                                                             "visit where the tenant allows neither; "
                                                             "notifications: never the report; attendance_report: "
                                                             "only the report (nothing live)."),
    "monthly_visit_allocation": FieldCopy("Visits per month (licences)", "The reports mark each visit within it "
                                                                         "or not; empty: not tracked."),
    "lobby_bypass_scope": FieldCopy("Who skips the meeting lobby", "organization: the hospital's people (a second "
                                                                   "clinician, staff interpreters, its Entra guests); "
                                                                   "organizer: only the meeting's organizer; "
                                                                   "organizationExcludingGuests: without Entra guests; "
                                                                   "organizationAndFederated: also federated tenants. "
                                                                   "Patients always wait to be admitted. Existing "
                                                                   "meetings change at their next launch."),
    "report_clinician_names": FieldCopy("Show clinicians' names in reports", "Off: clinicians appear by their "
                                                                             "EHR user ID only."),
}


@dataclass(frozen=True)
class FormField:
    """One input of the form, ready for the template."""

    name: str
    label: str
    hint: str
    widget: Widget
    value: str
    checked: bool = False
    options: tuple[str, ...] = ()
    error: str | None = None
    more: bool = False


def _widget(hint: Any) -> tuple[Widget, tuple[str, ...]]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return _widget(args[0]) if len(args) == 1 else ("text", ())
    if hint is bool:
        return "checkbox", ()
    if hint is int:
        return "number", ()
    if origin is Literal:
        return "radios", tuple(str(a) for a in typing.get_args(hint))
    if origin is tuple:
        return "lines", ()
    if origin is dict:
        return "pairs", ()
    return "text", ()


def editable_names(creating: bool) -> list[str]:
    """The settings the form shows: known ones in :data:`COPY` order, then the others by name."""
    names = [f.name for f in dataclasses.fields(EnvironmentConfig) if f.name not in OWN_ACTIONS]
    ordered = [n for n in COPY if n in names or (n == "id" and creating)]
    return ordered + sorted(n for n in names if n not in COPY)


def _text(value: Any, widget: Widget) -> str:
    if value is None:
        return ""
    if widget == "lines":
        return "\n".join(str(v) for v in value)
    if widget == "pairs":
        return "\n".join(f"{k} = {v}" for k, v in value.items())
    return str(value)


def form_fields(values: dict[str, Any], *, creating: bool, errors: dict[str, str] | None = None,
                raw: dict[str, str] | None = None) -> list[FormField]:
    """The form's inputs for ``values`` (a configuration document or defaults); ``raw`` (what was typed, when
    the form comes back with errors) wins over ``values``."""
    hints = typing.get_type_hints(EnvironmentConfig)
    errors, raw = errors or {}, raw or {}
    out = []
    for name in editable_names(creating):
        widget, options = ("text", ()) if name == "id" else _widget(hints[name])
        copy = COPY.get(name, FieldCopy(name.replace("_", " ").capitalize()))
        text = raw[name] if name in raw else _text(values.get(name), widget)
        checked = (name in raw and raw[name] == "on") if raw else bool(values.get(name))
        out.append(FormField(name, copy.label, copy.hint, widget, text, checked, options, errors.get(name),
                             more=name not in COPY))
    return out


def defaults() -> dict[str, Any]:
    """The values of a new environment's form (the model's defaults)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(EnvironmentConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    out.setdefault("kind", "test")
    return out


def parse_form(form: dict[str, list[str]], *,
               creating: bool) -> tuple[dict[str, Any], dict[str, str], list[Problem]]:
    """The typed body (for :meth:`lib.config.environments.EnvironmentAdmin.checked_body`), the raw texts of the
    form, and what could not be read (a ``key = value`` line without ``=``: that field is left out of the
    body, so the other fields are still checked). An unticked checkbox is ``False``; a field absent from the
    post is left out (a new environment's required ones are then named as missing); a number field's digits
    become a JSON integer (anything else is left as text, for the field's rule to refuse)."""
    hints = typing.get_type_hints(EnvironmentConfig)
    body: dict[str, Any] = {}
    raw: dict[str, str] = {}
    problems: list[Problem] = []
    for name in editable_names(creating):
        widget = "text" if name == "id" else _widget(hints[name])[0]
        if name not in form and widget != "checkbox":
            continue  # not on the posted form (an unselected radio group): unchanged, or required on create
        text = (form.get(name) or [""])[0]
        raw[name] = text
        if widget == "checkbox":
            body[name] = text == "on"
        elif widget == "lines":
            body[name] = [line.strip() for line in text.splitlines() if line.strip()]
        elif widget == "pairs":
            pairs, bad = {}, []
            for line in (ln.strip() for ln in text.splitlines()):
                if not line:
                    continue
                key, sep, value = line.partition("=") if " = " not in line else line.partition(" = ")
                if not sep:
                    bad.append(f"'{line[:80]}'")
                pairs[key.strip()] = value.strip()
            if bad:
                problems.append(Problem(name, f"{', '.join(bad)}: write each line as key = value"))
            else:
                body[name] = pairs
        else:  # text and number: an empty optional field means "not set"
            stripped = text.strip()
            optional = type(None) in typing.get_args(hints.get(name, str))
            if widget == "number" and re.fullmatch(r"[+-]?\d{1,15}", stripped):
                body[name] = int(stripped)
            else:
                body[name] = stripped if stripped or not optional else None
    return body, raw, problems
