"""What the admin API answers and the small request bodies of its actions (pydantic). Never a secret: the
configuration holds none, and :func:`lib.config.audit.without_secrets` strips any key that names one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lib.config.approvals import url_status
from lib.config.audit import AuditEntry, without_secrets
from lib.config.certificates import CertificateInfo, days_left, expiry_warning, parse_stored, soonest_expiry
from lib.config.records import IntegrationRecord
from lib.models import EnvironmentConfig


class ApprovalTarget(BaseModel):
    """Body of ``POST /api/config/approvals/signin``."""

    model_config = ConfigDict(extra="forbid")
    environmentId: str = Field(min_length=1, max_length=64)
    url: str = Field(min_length=1, max_length=500)


class ApprovalDecision(ApprovalTarget):
    """Body of ``POST /api/config/approvals/approve`` (``proof``) and ``.../send-back`` (``comment``)."""

    proof: str | None = Field(default=None, max_length=128)
    comment: str | None = Field(default=None, max_length=1000)


def session_view(principal: Any, csrf_token: str) -> dict[str, Any]:
    """``GET /api/config/session``."""
    return {"user": {"id": principal.user_id, "name": principal.name, "roles": sorted(principal.roles),
                     "source": principal.source}, "csrfToken": csrf_token}


def certificate_view(info: CertificateInfo, now: datetime | None = None) -> dict[str, Any]:
    """A certificate as shown: subject, issuer, SHA-256 thumbprint, validity, key (never a private key: none is
    ever accepted), the whole days it has left and, within 30 days of its end, a warning."""
    now = now or datetime.now(UTC)
    return {"subject": info.subject, "issuer": info.issuer, "thumbprintSha256": info.thumbprint_sha256,
            "thumbprintId": info.thumbprint_id, "notBefore": info.not_before.isoformat(),
            "notAfter": info.not_after.isoformat(), "key": info.key, "expiresInDays": days_left(info, now),
            "warning": expiry_warning(info, now)}


def url_view(config: EnvironmentConfig, url: str) -> dict[str, Any]:
    """One FHIR base URL with its tag (test/production), approver and approval status."""
    review = config.approvals.get(url)
    return {"url": url, "tag": config.kind, "approver": config.approvers.get(url), "status": url_status(config, url),
            "launchable": config.url_approved(url) and not config.disabled,
            "review": None if review is None else {
                "status": review.status, "by": review.by_name, "at": review.at, "fhirUser": review.fhir_user,
                "comment": review.comment}}


def environment_view(config: EnvironmentConfig, portal: Any = None) -> dict[str, Any]:
    """An environment as the API answers it: its settings, each URL's status, the parsed certificates."""
    doc = config.to_doc()
    doc.pop("approvals", None)
    doc.pop("hl7_certificates", None)
    doc["fhirBaseUrls"] = [url_view(config, url) for url in config.fhir_base_urls]
    now = datetime.now(UTC)
    doc["certificates"] = [certificate_view(info, now) for info in
                           (parse_stored(text) for text in config.hl7_certificates) if info]
    soonest = soonest_expiry(config.hl7_certificates, now)
    doc["certificateExpiresInDays"] = soonest[0] if soonest else None
    return without_secrets(doc)


def record_view(record: IntegrationRecord) -> dict[str, Any]:
    """One integration record."""
    return {"key": record.key, "title": record.title, "where": record.where,
            "fields": [{"epicField": f.epic_field, "value": f.value, "note": f.note} for f in record.fields]}


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    """One audit entry."""
    return {"id": entry.id, "environmentId": entry.environment_id, "at": entry.at.isoformat(),
            "actor": entry.actor_name, "actorId": entry.actor_id, "action": entry.action, "summary": entry.summary,
            "before": entry.before, "after": entry.after}
