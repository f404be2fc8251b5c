"""How a refused change is shown: each problem's field path (``display_name``, ``sms.per_number_cap``) named by
the label the portal's page shows for it, and pointed at an element that exists on the page (the error
summary's links). The JSON API lists the same path, label and sentence (docs/portal.md "Checks")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lib.config.environments import Problem
from lib.config.forms import COPY, editable_names

#: Labels of the SMS settings page (``lib/web/templates/portal/sms.html``), by setting.
SMS_LABELS: dict[str, str] = {
    "enabled": "Send texts for this environment",
    "sender": "Sender number",
    "confirm_booked": "Confirmation texts",
    "confirm_changed": "Confirmation texts",
    "confirm_cancelled": "Confirmation texts",
    "reminder_offsets_minutes": "Reminder times",
    "quiet_hours": "Quiet hours",
    "default_language": "Default language",
    "join_link_base_url": "Branded link address",
    "help_contact": "Help contact",
    "reachable_countries": "Countries the sender number can text",
    "per_number_cap": "Most texts to one phone number",
    "per_number_window_hours": "Most texts to one phone number: period (hours)",
    "templates": "Texts",
    "rate_per_minute": "Sending rate (texts a minute)",
    "phone_grace_minutes": "Phone number kept after the visit (minutes)",
    "consented_by": "Consents given by",
    "consented_at": "Consents given at",
}
#: Labels of problems that concern no single setting.
_OTHER_LABELS = {"sms": "Text messages", "consents": "Consents", "reload": "", "body": "Request body"}
#: Elements of the SMS page a problem can point at, other than the inputs named like their setting.
_SMS_ANCHORS = {"sms": "enabled", "sender": "sender-heading", "templates": "templates", "display_name": "templates",
                "consents": "consents", "reload": "reload", "confirm_booked": "confirm_booked",
                "confirm_changed": "confirm_changed", "confirm_cancelled": "confirm_cancelled"}
_SMS_INPUTS = frozenset({"enabled", "reminder_offsets_minutes", "quiet_hours", "default_language",
                         "join_link_base_url", "help_contact", "reachable_countries", "per_number_cap",
                         "per_number_window_hours", "rate_per_minute", "phone_grace_minutes"})


def label(field: str) -> str:
    """The label the portal shows for a problem's field path (``sms.per_number_cap`` -> "Most texts to one
    phone number"); a path without one is shown as words (``hl7_sending_facilities`` -> "Hl7 sending
    facilities"); ``""`` for a problem that is a whole sentence on its own (``reload``)."""
    head, _, rest = field.partition(".")
    if head == "sms" and rest:
        return SMS_LABELS.get(rest.split(".")[0], rest.split(".")[0].replace("_", " ").capitalize())
    if head in COPY:
        return COPY[head].label
    return _OTHER_LABELS.get(head, head.replace("_", " ").capitalize())


@dataclass(frozen=True)
class Shown:
    """A problem as a page shows it: ``field`` is the id of the element the summary links to, ``message`` the
    summary's text ("Organization name: ..."), ``detail`` the text beside the field."""

    field: str
    message: str
    detail: str


def environment_anchor(field: str, *, creating: bool) -> str:
    """The element of the environment form a problem of ``field`` points at: its input, the note on SMS
    settings (``sms``), or the form itself."""
    head = field.split(".")[0]
    if head in editable_names(creating) or head == "reload":
        return head
    return "sms" if head == "sms" else "environment-form"


def sms_anchor(field: str) -> str:
    """The element of the SMS page a problem of ``field`` points at."""
    head, _, rest = field.partition(".")
    setting = rest.split(".")[0] if head == "sms" and rest else head
    if setting == "templates" and rest.count(".") >= 2:
        language, kind = rest.split(".")[1:3]
        return f"tpl-{language}-{kind}"
    if setting in _SMS_INPUTS:
        return setting
    return _SMS_ANCHORS.get(setting, "sms-form")


def shown(problems: Iterable[Problem], *, anchor: str, creating: bool = False) -> tuple[list[Shown], dict[str, str]]:
    """``problems`` for a page (``anchor``: ``environment`` or ``sms``), in the order of the form's fields: the
    summary's entries, and the text beside each element (several problems of one field joined)."""
    order = {name: i for i, name in enumerate(editable_names(creating))}
    where = (lambda f: environment_anchor(f, creating=creating)) if anchor == "environment" else sms_anchor
    items = [Shown(where(p.field), f"{label(p.field)}: {p.message}" if label(p.field) else p.message, p.message)
             for p in problems]
    if anchor == "environment":
        items.sort(key=lambda s: order.get(s.field, len(order)))
    beside: dict[str, str] = {}
    for item in items:
        beside[item.field] = f"{beside[item.field]} · {item.detail}" if item.field in beside else item.detail
    return items, beside
