"""Test environments: a configured :class:`EnvironmentConfig` per test."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from lib.config.approvals import seeded_approvals
from lib.models import EnvironmentConfig, SmsSettings

SENDER = "+18005550100"


def make_environment(app: object, environment_id: str, **overrides: object) -> EnvironmentConfig:
    """Store and return a test environment (SMS on, America/New_York, test kind unless overridden).

    HL7 requests must be signed (``hl7_auth="jws"``) with the test interface engine's key, whose certificate
    is configured here; ``tests.support.calls.post_hl7`` signs by default. Pass ``hl7_auth="none"`` for a
    test that posts unsigned on purpose.
    """
    from tests.support.hl7_signing import default_signer

    sms = overrides.pop("sms", SmsSettings(enabled=True, sender=SENDER))
    overrides.setdefault("hl7_auth", "jws")
    overrides.setdefault("hl7_certificates", (default_signer().cert_text,))
    config = EnvironmentConfig(
        id=environment_id,
        kind="test",
        display_name="Contoso Health",
        fhir_base_urls=(),
        approved=True,
        epic_client_id="test-client",
        sms=sms,  # type: ignore[arg-type]
    )
    approved = overrides.pop("approved", True)
    config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
    if approved:  # every URL approved by the Epic analyst (docs/portal.md "Approval")
        config = seeded_approvals(config, at=datetime.now(UTC))
    app.repos.environments.put(config)  # type: ignore[attr-defined]
    return config
