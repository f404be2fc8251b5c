"""An environment's SMS settings in the portal: the two consents, confirmations, reminder times, quiet hours,
languages and templates, checked by :mod:`lib.sms.configuration` before anything is stored; and the live preview
of one text with its segment count (docs/portal.md "SMS")."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from lib.config.environments import STORED, Problem, pydantic_problems, without_broken_values
from lib.models import EnvironmentConfig, SmsSettings, iso
from lib.sms.configuration import MAX_HELP_CONTACT_CHARS, MAX_TEMPLATE_CHARS, sample_text
from lib.sms.segments import MAX_SEGMENTS, count_segments, non_gsm7_characters
from lib.sms.templates import KINDS, PLACEHOLDERS, format_when, placeholders, template_for

#: Set by their own actions: the sender by linking a number, the consents by the two consent boxes.
SMS_OWN_ACTIONS = frozenset({"sender", "consented_by", "consented_at"})


def _sms_fields() -> dict[str, Any]:
    hints = typing.get_type_hints(SmsSettings, include_extras=True)  # with each field's own rules
    return {f.name: (Optional[hints[f.name]], None)  # noqa: UP045 (create_model needs a runtime type)
            for f in dataclasses.fields(SmsSettings) if f.name not in SMS_OWN_ACTIONS}


#: Body of ``PUT /api/config/environments/{id}/sms``: the SMS settings (absent = unchanged) and the consents.
#: ``sender``, ``consented_by`` and ``consented_at`` are read-only (set by their own actions): accepted when
#: they equal the stored values, so the ``sms`` object of a GET can be sent back as it is.
SmsChange: type[BaseModel] = create_model(
    "SmsChange", __config__=ConfigDict(extra="forbid"),
    consentSendOnBehalf=(Optional[bool], Field(None, description="we send texts on the organization's behalf")),  # noqa: UP045
    consentPatientsAgreed=(Optional[bool], Field(None, description="the patients agreed to receive texts")),  # noqa: UP045
    **_sms_fields(),
    **{name: (Optional[str], Field(None, description="read-only: accepted when unchanged"))  # noqa: UP045
       for name in sorted(SMS_OWN_ACTIONS)})
#: How each read-only SMS field is changed instead.
_READ_ONLY_HOW = {"sender": "link a number instead (POST .../sms/sender, or the portal's SMS page)",
                  "consented_by": "it is set by giving both consents (consentSendOnBehalf, consentPatientsAgreed)",
                  "consented_at": "it is set by giving both consents (consentSendOnBehalf, consentPatientsAgreed)"}


class PreviewBody(BaseModel):
    """Body of ``POST /api/config/sms/preview``."""

    model_config = ConfigDict(extra="forbid")
    environmentId: str = Field(min_length=1, max_length=64)
    kind: Literal["booked", "changed", "cancelled", "reminder", "help"] = "booked"
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    template: str | None = Field(default=None, max_length=MAX_TEMPLATE_CHARS)
    helpContact: str | None = Field(default=None, max_length=MAX_HELP_CONTACT_CHARS,
                                    description="an unsaved help contact")


def read_sms_change(body: Any) -> tuple[dict[str, Any], list[Problem]]:
    """A ``PUT .../sms`` body read with :data:`SmsChange`: the fields that are sound (only those sent), and
    the problems of the others (``sms.<setting>``, ``consents``), so every problem is reported at once."""
    if not isinstance(body, dict):
        return {}, [Problem("body", "the body must be a JSON object of SMS settings")]
    try:
        return SmsChange.model_validate(body).model_dump(exclude_unset=True), []
    except ValidationError as exc:
        found = [Problem("consents" if p.field.startswith("consent") else f"sms.{p.field}", p.message)
                 for p in pydantic_problems(exc)]
    broken = {p.field.removeprefix("sms.") for p in found}
    sound = {k: v for k, v in body.items() if k not in broken and not (k.startswith("consent") and
                                                                        "consents" in broken)}
    return sound, found


def apply_sms_change(config: EnvironmentConfig, change: dict[str, Any], actor: Any, *,
                     now: datetime) -> tuple[EnvironmentConfig, list[Problem]]:
    """``config`` with the SMS change applied, and the change's problems (empty: it may be checked by the
    environment's rules and stored). A setting with a problem keeps its stored value, so the rules can still
    be checked on the others and every mistake reported at once.

    The problems: a field of the wrong type or range (pydantic, named ``sms.<setting>``), only one consent
    given, a read-only field (``sender``, ``consented_*``) sent with another value than the stored one.
    """
    change = dict(change)
    consent = (change.pop("consentSendOnBehalf", None), change.pop("consentPatientsAgreed", None))
    stored, _ = without_broken_values(config.to_doc(), keep=set())  # an older version's values never block
    sms = dict(stored["sms"])
    found: list[Problem] = []
    for name in sorted(SMS_OWN_ACTIONS & set(change)):
        sent = change.pop(name)
        if sent != sms.get(name):
            found.append(Problem(f"sms.{name}", f"is read-only here (stored: {sms.get(name)!r}); "
                                                f"{_READ_ONLY_HOW[name]}. Send the stored value or leave it out"))
    if consent != (None, None):
        if consent == (True, True):
            sms.update(consented_by=actor.name, consented_at=iso(now))
        elif consent == (False, False):
            sms.update(consented_by=None, consented_at=None, enabled=False)
        else:
            found.append(Problem("consents", "give both consents (or neither): we send on the organization's "
                                             "behalf, and your patients agreed to texts"))
    try:
        return STORED.validate_python({**stored, "sms": {**sms, **change}}), found
    except ValidationError as exc:
        found += pydantic_problems(exc)
    broken = {p.field.removeprefix("sms.").split(".")[0] for p in found}
    sound = {k: v for k, v in change.items() if k not in broken}
    try:
        return STORED.validate_python({**stored, "sms": {**sms, **sound}}), found
    except ValidationError:
        return config, found


def sms_change_summary(before: EnvironmentConfig, after: EnvironmentConfig) -> str:
    """The audit summary of an SMS change: which settings changed (``changed SMS settings: help_contact, ...``)."""
    old, new = dataclasses.asdict(before.sms), dataclasses.asdict(after.sms)
    changed = [name for name in new if old.get(name) != new[name]]
    return f"changed SMS settings: {', '.join(changed)}" if changed else "saved SMS settings without changes"


def preview(config: EnvironmentConfig, *, kind: str, language: str, template: str | None,
            public_base_url: str, start_utc: datetime | None = None,
            help_contact: str | None = None) -> dict[str, Any]:
    """One text as a patient would get it, with its segments, for a visit tomorrow at 22:45 local (a long
    date); ``template`` (unsaved) or the environment's own; ``help_contact`` (unsaved, ``""`` = none) or the
    environment's own.

    Returns:
        ``{"text", "encoding", "units", "segments", "maxSegments", "problems": [...], "nonGsm7"}``.
    """
    empty = {"text": "", "encoding": "", "units": 0, "segments": 0, "maxSegments": MAX_SEGMENTS, "nonGsm7": ""}
    if kind not in KINDS:
        return {**empty, "problems": [f"unknown kind {kind}"]}
    text_template = template if template is not None else template_for(kind, language, config.sms.templates,
                                                                         config.sms.default_language)
    problems: list[str] = []
    try:
        unknown = sorted(set(placeholders(text_template)) - PLACEHOLDERS)
    except ValueError:
        return {**empty, "problems": ["not a valid template (unbalanced braces)"]}
    if unknown:
        problems.append("unknown placeholder(s) " + ", ".join("{" + u + "}" for u in unknown) + "; use "
                        + ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS)))
        return {**empty, "problems": problems}
    from zoneinfo import ZoneInfo

    sms = config.sms if help_contact is None else dataclasses.replace(config.sms,
                                                                        help_contact=help_contact.strip() or None)
    zone = ZoneInfo(config.time_zone)
    start = start_utc or datetime.now(UTC).astimezone(zone).replace(hour=22, minute=45, second=0, microsecond=0)
    text = sample_text(text_template, sms, display_name=config.display_name, language=language,
                       when=format_when(start.astimezone(UTC), config.time_zone, language),
                       link_base=config.sms.join_link_base_url or public_base_url)
    count = count_segments(text)
    if count.segments > MAX_SEGMENTS:
        problems.append(f"{count.segments} segments: more than {MAX_SEGMENTS}; shorten the text")
    return {"text": text, "encoding": str(count.encoding), "units": count.units, "segments": count.segments,
            "maxSegments": MAX_SEGMENTS, "problems": problems, "nonGsm7": non_gsm7_characters(text)}

