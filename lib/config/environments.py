"""Environments in the portal: the request bodies (pydantic), the rules an environment must meet, and the
service that creates, edits, disables and lists them, auditing every change (docs/portal.md "Environments").

Bodies are pydantic models generated from :class:`lib.models.EnvironmentConfig`'s own fields, so a setting
added to the model is settable here at once; the portal's own fields (approvals, certificates, SMS, the
disabled flag) have their own actions. The stored configuration is validated with pydantic too
(:data:`STORED`) before the rules in :func:`problems` run.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional
from urllib.parse import urlsplit

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from lib.config.access import Principal
from lib.config.approvals import RevokedApproval, revoked_approvals, with_summary
from lib.config.audit import AuditLog, changed_fields
from lib.models import (
    COSMOS_ID_FORBIDDEN,
    DEFAULT_WRITEBACK_HORIZON_MINUTES,
    EnvironmentConfig,
    SmsSettings,
    writeback_settings_problems,
)
from lib.sms.configuration import sms_problems
from lib.store.environments import ConfigurationConflict, EnvironmentExists, EnvironmentRepository
from lib.store.errors import ConcurrencyConflict
from lib.stored_settings import UnusableSetting, stored_adapter

__all__ = ["EnvironmentExists"]  # re-exported: the portal and the API map it to 409 "already exists"

#: Fields changed only through their own actions (approval, certificate upload, SMS page, disable/enable).
OWN_ACTIONS = frozenset({"id", "approved", "approvals", "hl7_certificates", "sms", "disabled"})
#: Attempts of a change that is re-applied on the newest version when another save won the race (each round
#: of a race has a winner, so N writers saving once each all succeed while N <= ATTEMPTS).
ATTEMPTS = 8
ENVIRONMENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
#: Words the portal's URLs use after /environments/.
RESERVED_IDS = frozenset({"new"})
#: Epic's FHIR base URLs end with the API and version (connector 1.3+: R4; 1.1-1.2: DSTU2).
FHIR_SUFFIX = re.compile(r"/api/FHIR/(R4|DSTU2)$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: A Microsoft 365 sign-in name (UPN), shaped as an e-mail address: name@domain.tld.
_UPN = re.compile(r"^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,63}$")
_SEGMENT_FIELD = re.compile(r"^[A-Z][A-Z0-9]{2}-\d{1,3}(\.\d{1,3})?$")
_OID_SUFFIX = re.compile(r"^(\.\d+)+$")
_SYSTEM = re.compile(r"^(urn:oid:\d+(\.\d+)*|urn:[a-z0-9-]+:\S+|https?://\S+)$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

#: pydantic validation of a whole stored configuration (types, literals, nested records): the one the readers
#: check stored environments with before use (lib/stored_settings.py).
STORED: TypeAdapter[EnvironmentConfig] = stored_adapter()


def _optional_fields() -> dict[str, Any]:
    hints = typing.get_type_hints(EnvironmentConfig, include_extras=True)  # with each field's own rules
    return {f.name: (Optional[hints[f.name]], None)  # noqa: UP045 (create_model needs a runtime type)
            for f in dataclasses.fields(EnvironmentConfig) if f.name not in OWN_ACTIONS}


_FORBID = ConfigDict(extra="forbid")
#: Body of ``PATCH /api/admin/environments/{id}``: any editable field; absent = unchanged.
EnvironmentChange: type[BaseModel] = create_model("EnvironmentChange", __config__=_FORBID, **_optional_fields())
#: Body of ``POST /api/admin/environments``: the editable fields plus ``id``.
EnvironmentCreate: type[BaseModel] = create_model(
    "EnvironmentCreate", __config__=_FORBID,
    id=(str, Field(description="environment ID: lowercase letters, digits and '-', 2 to 63 characters")),
    **_optional_fields())


class DisableBody(BaseModel):
    """Body of disable/enable: a reason for the audit trail."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


@dataclass(frozen=True)
class Problem:
    """One reason a change is refused: the field (form input name) and what to do."""

    field: str
    message: str


class ConfigurationRefused(Exception):
    """A change breaks the rules; ``problems`` lists every reason (safe to show)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


class NotFound(Exception):
    """No environment with that ID."""


class ApprovalWouldBeRevoked(Exception):
    """The change would revoke the approval of ``revoked`` (every launch against them would be refused) and was
    not confirmed: nothing was written. The form asks "save anyway?"."""

    def __init__(self, revoked: list[RevokedApproval]) -> None:
        super().__init__("; ".join(r.message for r in revoked))
        self.revoked = revoked


class EditConflict(Exception):
    """The environment was saved by someone else since this edit read it (its version differs): nothing was
    written. The editor reloads and applies the change again.

    ``stale``: the version the editor sent (form field, ``If-Match``) is no longer the stored one; otherwise a
    change sent without a version kept losing the race (:data:`ATTEMPTS` times) or cannot be re-applied."""

    MESSAGE = ("This environment was changed by someone else since you opened it; nothing was saved. Reload it "
               "to see their change, then make yours again.")
    BUSY = ("This environment was being changed by someone else at the same moment; nothing was saved. Try again "
            "(GET it to see their change first).")

    def __init__(self, environment_id: str, *, stale: bool = True) -> None:
        super().__init__(environment_id)
        self.stale = stale


#: What a new environment must have, and what to write when it is missing.
REQUIRED_MESSAGES = {
    "id": "enter an environment ID, e.g. contoso-tst",
    "kind": "choose test or production",
    "display_name": "enter the organization's name as patients know it",
    "fhir_base_urls": "enter at least one FHIR base URL",
    "epic_client_id": "enter the client ID of our app in this Epic environment (Epic Connection Hub)",
}
#: Fields a new environment must have.
REQUIRED_ON_CREATE = tuple(REQUIRED_MESSAGES)
#: pydantic error types in plain words (the value's JSON type was wrong).
_TYPE_WORDS = {
    "string_type": "must be text (a JSON string)",
    "int_type": "must be a whole number (a JSON integer)",
    "int_parsing": "must be a whole number (a JSON integer)",
    "int_from_float": "must be a whole number (a JSON integer)",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "tuple_type": "must be a list of text values, e.g. [\"a\", \"b\"]",
    "list_type": "must be a list of text values, e.g. [\"a\", \"b\"]",
    "dict_type": "must be an object of names and text values, e.g. {\"name\": \"value\"}",
    "model_type": "must be an object",
    "dataclass_type": "must be an object",
    "none_required": "must be left out (null)",
}


def _plain(item: Any) -> str:
    """One pydantic error as a sentence an admin understands (no pydantic wording)."""
    kind, ctx = item["type"], item.get("ctx") or {}
    if kind == "missing":
        return "required: give a value"
    if kind == "extra_forbidden":
        return "unknown field: this is not a setting that can be sent here"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the listed values')}"
    if kind in ("string_too_long", "too_long"):
        unit = "characters" if kind.startswith("string") else "entries"
        return f"is too long (at most {ctx.get('max_length')} {unit})"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return "has characters or a form that is not allowed here"
    if kind == "value_error":
        return str(item["msg"]).removeprefix("Value error, ")
    return _TYPE_WORDS.get(kind, str(item["msg"]))


def pydantic_problems(error: ValidationError, *, prefix: str = "") -> list[Problem]:
    """The problems of a pydantic validation error, one per error: ``field`` is the setting's path
    (``sms.per_number_cap``; ``prefix`` is put before it), the message a plain sentence (an entry of a list
    named by its position: "entry 2: ...")."""
    out = []
    for item in error.errors():
        names = [str(part) for part in item["loc"] if not isinstance(part, int)]
        positions = [part for part in item["loc"] if isinstance(part, int)]
        field = prefix + (".".join(names) or "body")
        message = _plain(item)
        if positions and item["type"] != "extra_forbidden":
            message = f"entry {positions[-1] + 1}: {message}"
        out.append(Problem(field, message))
    return out


def url_problems(url: str) -> list[str]:
    """Why ``url`` cannot be a FHIR base URL (no network): https, no user, query, fragment or trailing slash,
    and Epic's ``/api/FHIR/R4`` (or ``/api/FHIR/DSTU2``) at the end."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return [f"{url}: must start with https:// (Epic serves FHIR over TLS only)"]
    problems = []
    if not parts.hostname:
        problems.append(f"{url}: has no host name")
    if parts.username or parts.password:
        problems.append(f"{url}: must not contain a user name or password")
    if parts.query or parts.fragment:
        problems.append(f"{url}: must not have a query (?...) or fragment (#...)")
    if url.endswith("/"):
        problems.append(f"{url}: remove the trailing slash; register the URL exactly as Epic sends it (iss)")
    elif not FHIR_SUFFIX.search(parts.path):
        problems.append(f"{url}: must end with /api/FHIR/R4 (or /api/FHIR/DSTU2 for older Teams app versions), "
                        "e.g. https://fhir.contoso.example/interconnect-fhir-oauth/api/FHIR/R4")
    return problems


def field_problems(config: EnvironmentConfig) -> list[Problem]:
    """The single-field rules of ``config`` (the pydantic validation of :data:`STORED`), for a configuration
    built in code rather than validated from a body (the SMS page, approvals)."""
    try:
        STORED.validate_python(config.to_doc())
    except ValidationError as exc:
        return pydantic_problems(exc)
    return []


def invalid_stored_fields(doc: dict[str, Any]) -> dict[str, str]:
    """Field -> message for the values of a stored configuration document that break a field's rule (saved by
    an older version): the form shows them as the field's error."""
    try:
        STORED.validate_python({k: v for k, v in doc.items() if k in EnvironmentConfig.__dataclass_fields__})
    except ValidationError as exc:
        return {p.field.split(".")[0]: p.message for p in pydantic_problems(exc)}
    return {}


def problems(config: EnvironmentConfig, *, others: list[EnvironmentConfig], public_base_url: str,
             discover: Callable[[str, str], str | None] | None, new_urls: set[str],
             sms_save: bool = False) -> list[Problem]:
    """Every rule an environment breaks (empty: it may be stored).

    Args:
        config: the environment as it would be stored.
        others: every other environment (a FHIR base URL names exactly one environment).
        public_base_url: the app's public URL (SMS template checks).
        discover: ``(url, client_id) -> problem or None``: SMART discovery of a newly added URL must answer.
        new_urls: the URLs added by this change (only those are fetched).
        sms_save: the SMS settings are being saved: the texts are rendered and measured even with SMS off
            (otherwise only when SMS is on; every text is measured again before it is sent).
    """
    out: list[Problem] = []
    if not ENVIRONMENT_ID.fullmatch(config.id) or config.id in RESERVED_IDS:
        out.append(Problem("id", "use 2 to 63 lowercase letters, digits or '-', starting with a letter or digit"))
    name_ok = bool(config.display_name.strip()) and len(config.display_name) <= 80
    if not name_ok:
        length = f"; this one has {len(config.display_name):,}" if len(config.display_name) > 80 else ""
        out.append(Problem("display_name", "enter the organization's name as patients know it (1 to 80 "
                                           f"characters{length})"))
    out += [p for p in field_problems(config) if name_ok or p.field != "display_name"]
    if not _CLIENT_ID.fullmatch(config.epic_client_id):
        out.append(Problem("epic_client_id", "enter the client ID of our app in this Epic environment (Epic "
                                             "Connection Hub: Non-Production or Production Client ID)"))
    if not config.fhir_base_urls:
        out.append(Problem("fhir_base_urls", "enter at least one FHIR base URL"))
    if len(set(config.fhir_base_urls)) != len(config.fhir_base_urls):
        out.append(Problem("fhir_base_urls", "a FHIR base URL is listed twice"))
    taken = {url: other.id for other in others for url in other.fhir_base_urls}
    for url in config.fhir_base_urls:
        found = url_problems(url)
        if not found and url in taken:
            found = [f"{url}: is already used by environment '{taken[url]}' (a launch is routed by its URL, "
                     "so each URL belongs to one environment)"]
        if not found and url in new_urls and discover is not None:
            reason = discover(url, config.epic_client_id)
            if reason:
                found = [f"{url}: {reason}"]
        out += [Problem("fhir_base_urls", text) for text in found]
    for url, approver in config.approvers.items():
        if url not in config.fhir_base_urls:
            out.append(Problem("approvers", f"{url}: an approver is named for a URL the environment does not list"))
        if not isinstance(approver, str) or not _UPN.fullmatch(approver):
            out.append(Problem("approvers", f"{url}: '{str(approver)[:80]}' is not a Microsoft 365 sign-in name; "
                                            "write the analyst's sign-in name as an e-mail address, e.g. "
                                            "analyst@contoso.example"))
    if config.default_region not in phonenumbers.SUPPORTED_REGIONS:
        out.append(Problem("default_region", f"'{config.default_region}' is not a phone region (ISO 3166 code "
                                             "such as US)"))
    if not config.csn_identifier_systems:
        out.append(Problem("csn_identifier_systems", "list at least one CSN identifier system (the default is "
                                                     "Epic's suffix .7.3.698084.8)"))
    for system in config.csn_identifier_systems:
        if not (_OID_SUFFIX.fullmatch(system) or _SYSTEM.fullmatch(system)):
            out.append(Problem("csn_identifier_systems", f"'{system}': use an OID suffix such as .7.3.698084.8 or a "
                                                         "whole system such as urn:oid:1.2.840.114350.1.13.0.1.7.3"
                                                         ".698084.8"))
    if config.conference_id_field and not _SEGMENT_FIELD.fullmatch(config.conference_id_field):
        out.append(Problem("conference_id_field", "use an HL7 field such as SCH-4 or ZCH-3.1"))
    for department, organizer in config.department_organizers.items():
        if not department.strip() or not _GUID.fullmatch(organizer):
            out.append(Problem("department_organizers", f"'{department}': map an Epic department ID to the "
                                                        "organizer's Entra object ID (a GUID)"))
    if config.fallback_organizer_id and not _GUID.fullmatch(config.fallback_organizer_id):
        out.append(Problem("fallback_organizer_id", "enter the organizer's Entra object ID (a GUID)"))
    if config.kind == "production" and config.hl7_auth == "none":
        out.append(Problem("hl7_auth", "a production environment must verify HL7 signatures (jws)"))
    if any(p.field == "time_zone" for p in out):
        return out  # the SMS checks render texts in the zone
    if config.sms.enabled and not config.sms.consented_at:
        out.append(Problem("sms.enabled", "SMS can be switched on only with both consents (we send on the "
                                          "organization's behalf; your patients agreed to receive texts)"))
    # The display name is in every text: once it failed, the texts are not rendered (a 70,000-character name
    # would only make every template too long, after rendering each for a year of dates).
    texts = name_ok and (config.sms.enabled or sms_save)
    out += [Problem(sms_path(p.setting), p.message)
            for p in sms_problems(config, public_base_url=public_base_url, check_templates=texts)]
    out += writeback_problems(config)
    return out


def sms_path(setting: str) -> str:
    """The field path of an SMS setting's problem (``per_number_cap`` -> ``sms.per_number_cap``); a problem of
    the environment (``display_name``) or of the settings as a whole (``sms``) keeps its name."""
    return setting if setting in ("sms", "display_name") else f"sms.{setting}"


def writeback_problems(config: EnvironmentConfig) -> list[Problem]:
    """What is wrong with the environment's write-back settings, each on its form field (empty when fine)."""
    codes = writeback_settings_problems(config.writeback_status_codes, DEFAULT_WRITEBACK_HORIZON_MINUTES)
    horizon = writeback_settings_problems({}, config.writeback_retry_horizon_minutes)
    return ([Problem("writeback_status_codes", text) for text in codes]
            + [Problem("writeback_retry_horizon_minutes", text) for text in horizon])


class EnvironmentAdmin:
    """Creates, edits, disables and lists environments, auditing each change.

    Args:
        environments: the repository.
        audit: the audit log.
        clock: ``now()`` for audit entries.
        public_base_url: ``PUBLIC_BASE_URL``.
        discover: checks that a new FHIR base URL answers SMART discovery (``(url, client_id) -> problem``).
    """

    def __init__(self, *, environments: EnvironmentRepository, audit: AuditLog, clock: Any,
                 public_base_url: str, discover: Callable[[str, str], str | None] | None) -> None:
        self._environments = environments
        self._audit = audit
        self._clock = clock
        self._public = public_base_url
        self._discover = discover

    def list(self) -> list[EnvironmentConfig]:
        """Every environment that reads as a configuration, by ID (:meth:`unreadable` names the others)."""
        return sorted(self._environments.all(), key=lambda e: e.id)

    def unreadable(self) -> list[UnusableSetting]:
        """The stored environments that could not be read as configurations at the last :meth:`list`."""
        return self._environments.unreadable()

    def get(self, environment_id: str) -> EnvironmentConfig:
        """One environment, read fresh (no cache: the portal shows what is stored): one point read, its ID
        being its partition key (lib/store/environments.py), whatever the number of environments stored.

        Raises:
            NotFound: unknown ID.
        """
        found = self._environments.get(environment_id, fresh=True) if _storable_id(environment_id) else None
        if found is None:
            raise NotFound(environment_id)
        return found

    def get_versioned(self, environment_id: str) -> tuple[EnvironmentConfig, str]:
        """One environment and its version (the stored document's ETag), for an edit that must not overwrite
        someone else's save: pass the version back to :meth:`update` or :meth:`replace_checked`.

        Raises:
            NotFound: unknown ID.
        """
        found = self._environments.read_versioned(environment_id)
        if found is None:
            raise NotFound(environment_id)
        return found

    def checked_body(self, body: Any, *, environment_id: str | None = None,
                     found: list[Problem] | None = None) -> dict[str, Any]:
        """``body`` validated by :data:`EnvironmentCreate` (``environment_id`` is ``None``) or
        :data:`EnvironmentChange` (only the fields sent), or a refusal listing every problem at once: ``found``
        (what the form could not read), the model's, the required fields missing on create, and the rules of
        the other fields (a field with a problem is left out of those, so an ``id`` sent in a change is not
        taken for another environment's).

        Raises:
            ConfigurationRefused: anything is wrong. NotFound: ``environment_id`` is unknown.
        """
        creating = environment_id is None
        found = list(found or [])
        if not isinstance(body, dict):
            raise ConfigurationRefused([Problem("body", "the body must be a JSON object of settings")])
        missing = [Problem(name, message) for name, message in REQUIRED_MESSAGES.items()
                   if creating and body.get(name) in (None, "", [], ())]
        typed: dict[str, Any] = {}
        try:
            typed = (EnvironmentCreate if creating else EnvironmentChange).model_validate(body).model_dump(
                exclude_unset=True)
        except ValidationError as exc:
            found += [p for p in pydantic_problems(exc) if p.field not in {m.field for m in missing}]
        found += missing
        if not found:
            return typed
        flagged = {p.field.split(".")[0] for p in found}
        sound = {k: v for k, v in body.items() if k not in flagged}
        base = _PLACEHOLDERS if creating else self.get(environment_id or "").to_doc()
        raise ConfigurationRefused(found + self._other_problems({**base, **sound}, flagged, creating=creating))

    def create(self, body: dict[str, Any], actor: Principal) -> EnvironmentConfig:
        """Create an environment from a body (checked with :meth:`checked_body`).

        Raises:
            ConfigurationRefused: a rule is broken (also: a URL another environment holds, even one saved a
                moment ago). EnvironmentExists: the ID exists (also: created by a racing request).
        """
        body = self.checked_body(body)
        if any(e.id == body["id"] for e in self._environments.all()):
            raise EnvironmentExists(body["id"])
        config = self._validated({"approved": False, **body})
        self._check(config, new_urls=set(config.fhir_base_urls), creating=True)
        config = with_summary(config)
        try:
            self._environments.create(config)  # create-only: a racing create of the same ID loses here
        except ConfigurationConflict as exc:
            raise ConfigurationRefused([Problem("fhir_base_urls", str(exc))]) from None
        self._audit.record(environment_id=config.id, at=self._clock.now(), actor_id=actor.user_id,
                           actor_name=actor.name, action="environment.create",
                           summary=f"created environment {config.id} ({config.kind})", before=None,
                           after=config.to_doc())
        return config

    def update(self, environment_id: str, change: dict[str, Any], actor: Principal, *,
               action: str = "environment.update", version: str | None = None) -> EnvironmentConfig:
        """:meth:`edit` without the revoked approvals (they are allowed)."""
        return self.edit(environment_id, change, actor, action=action, version=version)[0]

    def edit(self, environment_id: str, change: dict[str, Any], actor: Principal, *,
             action: str = "environment.update", version: str | None = None,
             confirm_revoke: bool = True) -> tuple[EnvironmentConfig, list[RevokedApproval]]:
        """Apply a validated :data:`EnvironmentChange` body (only the fields given); the saved environment and
        the approvals the change revoked (``confirm_revoke=False``: refuse such a change instead, see
        :class:`ApprovalWouldBeRevoked`).

        Approvals of removed URLs are dropped; an approval whose URL's kind or client ID changed stops counting
        (its fingerprint differs) until the analyst approves again. With ``version`` (the one the editor read)
        a save in between refuses the edit; without one the change is applied to the newest version, and
        re-applied (up to :data:`ATTEMPTS` times) when another save wins the race: it changes only its fields.

        Raises:
            NotFound, ConfigurationRefused, EditConflict, ApprovalWouldBeRevoked.
        """
        revoked: list[RevokedApproval] = []

        def apply(current: EnvironmentConfig) -> EnvironmentConfig:
            stored, reset = without_broken_values(current.to_doc(), keep=set(change))
            config = self._validated({**stored, **change})
            config = dataclasses.replace(
                config, approvals={u: r for u, r in config.approvals.items() if u in config.fhir_base_urls},
                approvers={u: a for u, a in config.approvers.items() if u in config.fhir_base_urls}
                if "approvers" not in change else config.approvers)
            self._check(config, new_urls=set(config.fhir_base_urls) - set(current.fhir_base_urls))
            config = with_summary(config)
            revoked[:] = revoked_approvals(current, config)
            if revoked and not confirm_revoke:
                raise ApprovalWouldBeRevoked(list(revoked))
            notes.clear()
            if reset:  # say so in the audit trail: the user did not send these
                fields = changed_fields(current.to_doc(), config.to_doc())
                notes.append(f"changed {', '.join(fields)}; reset invalid stored {', '.join(reset)} to the default")
            return config

        notes: list[str] = []
        saved = self.modify(environment_id, apply, actor, action=action, version=version,
                            summary=lambda _before, _after: notes[0] if notes else None)
        return saved, revoked

    def modify(self, environment_id: str, change: Callable[[EnvironmentConfig], EnvironmentConfig],
               actor: Principal, *, action: str,
               summary: Callable[[EnvironmentConfig, EnvironmentConfig], str | None] | str | None = None,
               version: str | None = None, retry: bool = True) -> EnvironmentConfig:
        """Read the environment, compute ``change(current)`` and write it ETag-guarded; audit only what was
        stored. When another save wins the race, the change is computed again on the newest version (``retry``:
        for a change that is right on any version, e.g. adding a certificate: its checks run again) up to
        :data:`ATTEMPTS` times; with ``version`` (the editor's), a newer stored version refuses it at once.
        ``summary``: the audit entry's sentence (or ``(before, after) -> sentence``; default: the changed fields).

        Raises:
            NotFound, EditConflict, and whatever ``change`` raises.
        """
        for _ in range(ATTEMPTS if retry and version is None else 1):
            current, stored_version = self.get_versioned(environment_id)
            if version is not None and version != stored_version:
                raise EditConflict(environment_id)
            after = change(current)
            try:
                return self.store(current, after, actor, action=action, version=stored_version,
                                  summary=summary(current, after) if callable(summary) else summary)
            except EditConflict:
                time.sleep(random.uniform(0, 0.02))  # noqa: S311 (jitter: racing retries do not meet in lockstep)
                continue
        raise EditConflict(environment_id, stale=version is not None)

    def store(self, before: EnvironmentConfig, after: EnvironmentConfig, actor: Principal, *, action: str,
              summary: str | None = None, version: str | None = None) -> EnvironmentConfig:
        """Write ``after`` over ``before`` and audit it (used by the other portal services too). With
        ``version`` (that of ``before``), only if nobody saved the environment since.

        Raises:
            EditConflict: ``version`` is no longer the stored one.
        """
        try:
            self._environments.put(after, version=version)
        except ConcurrencyConflict:
            raise EditConflict(after.id) from None
        except ConfigurationConflict as exc:
            raise ConfigurationRefused([Problem("fhir_base_urls", str(exc))]) from None
        fields = changed_fields(before.to_doc(), after.to_doc())
        self._audit.record(environment_id=after.id, at=self._clock.now(), actor_id=actor.user_id,
                           actor_name=actor.name, action=action,
                           summary=summary or (f"changed {', '.join(fields)}" if fields else "saved without changes"),
                           before={k: before.to_doc()[k] for k in fields},
                           after={k: after.to_doc()[k] for k in fields})
        return after

    def replace_checked(self, before: EnvironmentConfig, after: EnvironmentConfig, actor: Principal, *,
                        action: str, version: str | None = None, summary: str | None = None,
                        sms_save: bool = False, found: list[Problem] | None = None) -> EnvironmentConfig:
        """Check every rule on ``after`` (no new URL), then store and audit it (``version``: as :meth:`store`;
        ``summary``: the audit entry's, else the changed fields; ``sms_save``: the SMS settings' save, whose
        texts are measured even with SMS off; ``found``: problems the caller already has, refused together
        with the rules' own).

        Raises:
            ConfigurationRefused, EditConflict.
        """
        self.check(before, after, sms_save=sms_save, found=found)
        return self.store(before, after, actor, action=action, version=version, summary=summary)

    def check(self, before: EnvironmentConfig, after: EnvironmentConfig, *, sms_save: bool = False,
              found: list[Problem] | None = None) -> None:
        """Check every rule on ``after``, a change of ``before`` (SMART discovery only for URLs it adds;
        ``sms_save``, ``found``: as :meth:`replace_checked`).

        Raises:
            ConfigurationRefused.
        """
        self._check(after, new_urls=set(after.fhir_base_urls) - set(before.fhir_base_urls), sms_save=sms_save,
                    found=found)

    def set_disabled(self, environment_id: str, disabled: bool, reason: str, actor: Principal) -> EnvironmentConfig:
        """Disable (what it stops: docs/portal.md "Disabling an environment"; configuration kept) or enable an
        environment. Already in that state: nothing is written or audited."""
        current = self.get(environment_id)
        if current.disabled == disabled:
            return current
        word = "disabled" if disabled else "enabled"
        return self.modify(environment_id, lambda config: dataclasses.replace(config, disabled=disabled), actor,
                           action=f"environment.{word[:-1]}",
                           summary=f"{word} environment {environment_id}" + (f": {reason}" if reason else ""))

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _validated(self, doc: dict[str, Any]) -> EnvironmentConfig:
        try:
            return STORED.validate_python({k: v for k, v in doc.items()
                                           if k in EnvironmentConfig.__dataclass_fields__})
        except ValidationError as exc:
            found = pydantic_problems(exc)
        raise ConfigurationRefused(found + self._other_problems(doc, {p.field.split(".")[0] for p in found}))

    def _other_problems(self, doc: dict[str, Any], flagged: set[str], *, creating: bool = False) -> list[Problem]:
        """The rule problems of the fields not in ``flagged`` (those are read with their defaults), so every
        mistake is listed at once; no SMART discovery (nothing is saved anyway)."""
        repaired, _ = without_broken_values(doc, keep=set())
        try:
            config = STORED.validate_python(repaired)
        except ValidationError:
            return []  # a required field is missing or broken: its own message says so
        everyone = self._environments.all()
        found = problems(config, others=[e for e in everyone if e.id != config.id], public_base_url=self._public,
                         discover=None, new_urls=set())
        if creating and any(e.id == config.id for e in everyone):
            found.append(Problem("id", f"an environment '{config.id}' already exists"))
        return [p for p in found if p.field.split(".")[0] not in flagged]

    def _check(self, config: EnvironmentConfig, *, new_urls: set[str], creating: bool = False,
               sms_save: bool = False, found: list[Problem] | None = None) -> None:
        everyone = self._environments.all()
        out = list(found or [])
        if creating and any(e.id == config.id for e in everyone):
            raise EnvironmentExists(config.id)  # created meanwhile by a racing request: the create's own answer
        flagged = {p.field for p in out}
        out += [p for p in problems(config, others=[e for e in everyone if e.id != config.id],
                                    public_base_url=self._public, discover=self._discover, new_urls=new_urls,
                                    sms_save=sms_save)
                if p.field not in flagged]
        if out:
            raise ConfigurationRefused(out)


#: Values standing in for a new environment's required fields while the other fields' rules are checked (the
#: missing ones are reported by their own message).
_PLACEHOLDERS: dict[str, Any] = {"approved": False, "id": "new-environment", "kind": "test",
                                 "display_name": "New environment", "fhir_base_urls": (),
                                 "epic_client_id": "client"}


def _storable_id(value: object) -> bool:
    """Whether ``value`` can be a Cosmos item id at all (text, 1-255 printable characters, none of ``/ \\ ? #``):
    anything else names no environment and is not sent to the store (the rules refuse it on create)."""
    return (isinstance(value, str) and 0 < len(value) <= 255 and value.isprintable()
            and not COSMOS_ID_FORBIDDEN.intersection(value))


def _default(cls: Any, name: str) -> Any:
    spec = cls.__dataclass_fields__[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return dataclasses.MISSING


def without_broken_values(doc: dict[str, Any], *, keep: set[str]) -> tuple[dict[str, Any], list[str]]:
    """``doc`` (a stored configuration) with every value that breaks its field's rule replaced by the field's
    default, except the fields in ``keep`` (those the change sets: their new value is checked instead); and
    the names of the fields reset (``sms.x`` for an SMS setting). A value an older version stored (a horizon
    of 1e+23) so never blocks saving another field; a field without a default is left for the check to name.
    """
    out = {k: v for k, v in doc.items() if k in EnvironmentConfig.__dataclass_fields__}
    try:
        STORED.validate_python(out)
    except ValidationError as exc:
        errors = exc.errors()
    else:
        return out, []
    reset: list[str] = []
    for item in errors:
        loc = [str(part) for part in item["loc"]]
        if not loc or loc[0] in keep or loc[0] not in EnvironmentConfig.__dataclass_fields__:
            continue
        if loc[0] == "sms" and len(loc) > 1 and loc[1] in SmsSettings.__dataclass_fields__:
            default = _default(SmsSettings, loc[1])
            if isinstance(out.get("sms"), dict) and default is not dataclasses.MISSING:
                out["sms"] = {**out["sms"], loc[1]: default}
                reset.append(f"sms.{loc[1]}")
            continue
        default = _default(EnvironmentConfig, loc[0])
        if default is not dataclasses.MISSING:
            out[loc[0]] = default
            reset.append(loc[0])
    return out, list(dict.fromkeys(reset))


def now_iso(at: datetime) -> str:
    """``at`` as ISO-8601 (for bodies)."""
    return at.isoformat()
