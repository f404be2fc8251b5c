"""Seeds a local profile: the Cosmos schema, the demo environment, and our registrations in the stand-ins.

``python -m local.seed --profile demo`` (``./dev runner`` does it). Idempotent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import requests

from lib.models import EnvironmentConfig, SmsSettings

DEMO_ENVIRONMENT_ID = "demo"
DEMO_TIME_ZONE = "America/New_York"
DEMO_CLIENT_ID = "open-virtual-visits-demo"
DEMO_PROVIDER = "E1001"
DEMO_ORGANIZER = "5b4e6f0a-0c1d-4e2f-9a3b-0d1e2f3a4b5c"
DEMO_SENDER = "+18005550100"


def demo_environment(settings: dict[str, str]) -> EnvironmentConfig:
    """The demo environment: a test Epic environment whose FHIR base URL is the Epic stand-in's."""
    return EnvironmentConfig(
        id=DEMO_ENVIRONMENT_ID,
        kind="test",
        display_name="Contoso Health",
        fhir_base_urls=(f"{settings['EPIC_STANDIN_URL']}/api/FHIR/R4",),
        approved=True,
        epic_client_id=DEMO_CLIENT_ID,
        time_zone=DEMO_TIME_ZONE,
        default_region="US",
        fallback_organizer_id=DEMO_ORGANIZER,
        sms=SmsSettings(enabled=True, sender=DEMO_SENDER),
    )


def register_in_standins(settings: dict[str, str]) -> None:
    """Register our SMART client in the Epic stand-in and our Entra app and organizer in the Graph stand-in.

    Raises:
        requests.HTTPError: a stand-in refused a registration.
    """
    verify = settings["LOCAL_CA_BUNDLE"]
    base = settings["PUBLIC_BASE_URL"]
    requests.post(
        f"{settings['EPIC_STANDIN_URL']}/_standin/clients",
        json={"client_id": DEMO_CLIENT_ID, "jwks_url": f"{base}/api/.well-known/jwks.json",
              "redirect_uris": [f"{base}/api/launch/callback"]},
        verify=verify, timeout=10,
    ).raise_for_status()
    graph = settings["GRAPH_STANDIN_URL"]
    requests.post(
        f"{graph}/_standin/apps",
        json={"client_id": settings["GRAPH_CLIENT_ID"], "tenant": settings["GRAPH_TENANT_ID"],
              "certificate_pem": Path(settings["GRAPH_CLIENT_CERT_FILE"]).read_text(),
              "redirect_uris": [f"{base}/api/launch/signin"]},
        verify=verify, timeout=10,
    ).raise_for_status()
    requests.post(
        f"{graph}/_standin/users", json={"id": DEMO_ORGANIZER, "displayName": "Demo clinic organizer"},
        verify=verify, timeout=10,
    ).raise_for_status()


def seed(settings: dict[str, str]) -> EnvironmentConfig:
    """Create the Cosmos schema, store the demo environment and register with the stand-ins."""
    import dataclasses

    from functions.dependencies import Services

    app = Services(dict(settings))
    app.store.ensure_schema()
    environment = demo_environment(settings)
    for other in app.repos.environments.all():  # the stand-in's FHIR base URL belongs to the demo only
        if other.id != environment.id and set(other.fhir_base_urls) & set(environment.fhir_base_urls):
            kept = tuple(u for u in other.fhir_base_urls if u not in environment.fhir_base_urls)
            app.repos.environments.put(dataclasses.replace(other, fhir_base_urls=kept))
    app.repos.environments.put(environment)
    register_in_standins(settings)
    return environment


def main() -> int:
    """CLI entry point."""
    from local import services

    parser = argparse.ArgumentParser(description="Seed a local profile")
    parser.add_argument("--profile", default="demo", choices=["demo", "test"])
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    seed(services.settings_for(args.profile, root))
    print(f"seeded environment '{DEMO_ENVIRONMENT_ID}' ({args.profile})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
