"""Rotating the Graph client certificate (our notification encryption certificate) against the Graph stand-in:
with the new certificate in ``GRAPH_CLIENT_CERT`` and the old one in ``GRAPH_CLIENT_CERT_PREVIOUS``, notifications
of visits subscribed with the old one are still decrypted and applied, and their next renewal subscribes them
again with the new one (the old Graph subscription deleted), after which the old certificate can go.

Edge: the stand-in's app registration holds one certificate, so the Graph token is still signed with the old one
here (in Entra both certificates are on the app during a rotation); what rotates is the encryption certificate.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_presence import (  # noqa: F401 (module fixtures: the dev runner, URLs, environment)
    CLINICIAN,
    control,
    env,
    new_visit,
    runner,
    urls,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def new_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second RSA key + self-signed certificate, as an operator would put in Key Vault."""
    from local.tls import _ensure_graph_pem

    path = Path(tmp_path_factory.mktemp("rotation")) / "graph-new.pem"
    _ensure_graph_pem(path, "virtual-visits-local-graph-rotated")
    return path.read_text()


@pytest.fixture(scope="module")
def rotated(service_settings: dict[str, str], new_pem: str) -> Iterator[Any]:
    """The app as deployed after the rotation: the new certificate current, the old one previous."""
    from functions.dependencies import Services

    old_pem = Path(service_settings["GRAPH_CLIENT_CERT_FILE"]).read_text()
    yield Services({**service_settings, "GRAPH_CLIENT_CERT": new_pem, "GRAPH_CLIENT_CERT_PREVIOUS": old_pem})


def roster_update(app: Any, urls: dict[str, str], graph_id: str) -> bytes:  # noqa: F811
    """A genuine delivery (encrypted by the Graph stand-in for subscription ``graph_id``'s certificate) of the
    clinician joining."""
    import json
    import uuid

    call_event = {"@odata.type": "#microsoft.graph.callEvent", "id": str(uuid.uuid4()),
                  "callEventType": "rosterUpdated", "eventDateTime": datetime.now(UTC).isoformat(), "participants": [
                      {"id": "p1", "isInLobby": False, "info": {"identity": {"user": {"id": CLINICIAN}}}}]}
    sealed = control(urls, "graph", "POST", "notifications/sealed", {"subscriptionId": graph_id,
                                                                     "callEvent": call_event})
    return json.dumps(sealed).encode()


def test_both_certificates_are_ours_during_a_rotation_the_new_one_first(app: Any, rotated: Any) -> None:
    old_id = next(iter(app.notification_certificates))
    certificates = list(rotated.notification_certificates)
    assert len(certificates) == 2 and certificates[1] == old_id
    assert rotated.presence_subscriptions._certificate.certificate_id == certificates[0]


def test_a_visit_subscribed_with_the_old_certificate_keeps_its_presence_after_the_switch(
        app: Any, env: Any, urls: dict[str, str], rotated: Any) -> None:  # noqa: F811
    from lib.store.graph_subscriptions import subscription_doc_id

    appointment = new_visit(app, env)  # subscribed by the app before the rotation: encrypted for the old one
    sub = app.presence_subscriptions._repo.get(subscription_doc_id(appointment.key))
    report = rotated.notifications.changes(roster_update(app, urls, sub.graph_id))
    assert (report.applied, report.refused) == (1, [])
    assert [e.type for e in app.repos.visit_events.for_appointment(appointment.key)] == ["connected"]

    # Without the previous certificate (the rotation as it was): refused, nothing applied.
    from lib.presence.notifications import NotificationService

    current_only = NotificationService(
        subscriptions=rotated.presence_subscriptions, roster=rotated.roster,
        certificates=dict(list(rotated.notification_certificates.items())[:1]),
        validation_tokens=rotated.validation_tokens)
    assert current_only.changes(roster_update(app, urls, sub.graph_id)).refused == ["unknown_certificate"]


def test_the_renewal_after_a_rotation_subscribes_again_with_the_new_certificate(
        app: Any, env: Any, urls: dict[str, str], rotated: Any) -> None:  # noqa: F811
    from lib.clock import SystemClock
    from lib.presence.subscriptions import PresenceSubscriptions
    from lib.store.graph_subscriptions import subscription_doc_id

    appointment = new_visit(app, env)
    repo = app.presence_subscriptions._repo
    before = repo.get(subscription_doc_id(appointment.key))
    new_certificate = rotated.presence_subscriptions._certificate
    after_rotation = PresenceSubscriptions(  # the rotated app's timer (its Graph token: see the module's note)
        repo=repo, graph=app.presence_subscriptions._graph, certificate=new_certificate,
        public_base_url=app.settings.public_base_url, clock=SystemClock(), queues=app.queues,
        presence=app.presence_repo)
    assert after_rotation.run_due()["renewed"] >= 1  # it expires within a day: renewed

    renewed = repo.get(subscription_doc_id(appointment.key))
    assert renewed.state == "active" and renewed.graph_id != before.graph_id
    assert renewed.certificate_id == new_certificate.certificate_id
    graph_subs = {s["id"]: s for s in control(urls, "graph", "GET", "subscriptions")}
    assert before.graph_id not in graph_subs  # the old subscription is deleted
    assert graph_subs[renewed.graph_id]["encryptionCertificateId"] == new_certificate.certificate_id

    # Its notifications are now encrypted for the new certificate: the new one alone decrypts them.
    report = rotated.notifications.changes(roster_update(app, urls, renewed.graph_id))
    assert (report.applied, report.refused) == (1, [])
    after_rotation.run_due()  # from now on it is renewed in place
    assert repo.get(subscription_doc_id(appointment.key)).graph_id == renewed.graph_id
