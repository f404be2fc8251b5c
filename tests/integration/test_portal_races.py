"""Admins (or scripts, or a double-clicked Save) changing the configuration at the same moment, over HTTP on the
dev runner with the Cosmos-compatible server: threads released together by a barrier. Whatever the interleaving,
an environment is created once, a FHIR base URL ends in one environment, every certificate answered 201 is
stored (and the cap of two holds), a PATCH without If-Match is never lost, and no caller gets a bare 500.

The in-process tests force the interleavings the threads may miss (a save landing between a change's read and
its write; a claim left by a process that died)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from lib.config.access import Principal
from lib.store.fhir_url_claims import claim_id, normalised
from tests.integration.portal_client import PortalUser, problem_code, served_app
from tests.support.environments import make_environment
from tests.support.hl7_signing import signer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runner(app: Any, service_settings: dict[str, str]) -> Iterator[str]:
    with served_app(service_settings["PUBLIC_BASE_URL"], "function_app_portal_race_tests") as public:
        yield public


@pytest.fixture(scope="module")
def epic(service_settings: dict[str, str]) -> str:
    return service_settings["EPIC_STANDIN_URL"]


@pytest.fixture(scope="module")
def admins(runner: str, service_settings: dict[str, str]) -> list[PortalUser]:
    ca = service_settings["REQUESTS_CA_BUNDLE"]
    return [PortalUser(runner, f"admin{i}@contoso.example", ("Admin",), ca) for i in range(6)]


def fhir_url(epic: str) -> str:
    """A FHIR base of the Epic stand-in that answers SMART discovery and belongs to no environment."""
    return f"{epic}/org{uuid.uuid4().hex[:8]}/api/FHIR/R4"


def body(epic: str, env_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": env_id, "kind": "test", "display_name": "Contoso Health", "fhir_base_urls": [fhir_url(epic)],
            "epic_client_id": "vv-test-client", "time_zone": "America/Chicago", **extra}


def at_once(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Run ``calls`` in threads released together."""
    gate = threading.Barrier(len(calls))

    def run(call: Callable[[], requests.Response]) -> requests.Response:
        gate.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def audit_actions(app: Any, env_id: str, action: str) -> int:
    return sum(1 for e in app.portal.audit.for_environment(env_id) if e.action == action)


# ---- creating ----------------------------------------------------------------------------------------------
def test_concurrent_creates_of_one_id_create_it_once_and_the_others_hear_it_exists(
        app: Any, admins: list[PortalUser], epic: str) -> None:
    env_id = f"race-{uuid.uuid4().hex[:8]}"
    bodies = [body(epic, env_id, display_name=f"Race {i}") for i in range(6)]
    answers = at_once([lambda u=u, b=b: u.send("POST", "/api/config/environments", b)
                       for u, b in zip(admins, bodies, strict=True)])

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 409, 409, 409, 409, 409], [a.text for a in answers]
    winner = next(i for i, a in enumerate(answers) if a.status_code == 201)
    for loser in (a for a in answers if a.status_code == 409):
        assert problem_code(loser) == "ALREADY_EXISTS"
        assert f"An environment '{env_id}' already exists" in loser.json()["detail"]
    stored = app.portal.environments.get(env_id)
    assert stored.display_name == f"Race {winner}"  # the one told "created" is the one kept
    assert stored.fhir_base_urls == tuple(bodies[winner]["fhir_base_urls"])
    assert audit_actions(app, env_id, "environment.create") == 1
    # the losers' URLs were released: another environment may take one at once
    loser_url = bodies[(winner + 1) % 6]["fhir_base_urls"]
    again = admins[0].send("POST", "/api/config/environments",
                           body(epic, f"race-{uuid.uuid4().hex[:8]}", fhir_base_urls=loser_url))
    assert again.status_code == 201, again.text


def test_concurrent_creates_with_one_url_leave_it_in_one_environment(
        app: Any, admins: list[PortalUser], epic: str) -> None:
    url = fhir_url(epic)
    ids = [f"race-u{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
    answers = at_once([lambda u=u, i=i: u.send("POST", "/api/config/environments", body(epic, i, fhir_base_urls=[url]))
                       for u, i in zip(admins, ids, strict=True)])

    assert sorted(a.status_code for a in answers) == [201, 422, 422, 422, 422, 422], [a.text for a in answers]
    holders = [e.id for e in app.portal.environments.list() if url in e.fhir_base_urls]
    winner = ids[next(i for i, a in enumerate(answers) if a.status_code == 201)]
    assert holders == [winner]
    for loser in (a for a in answers if a.status_code == 422):
        assert problem_code(loser) == "INVALID"
        [error] = loser.json()["errors"]
        assert error["field"] == "fhir_base_urls" and f"environment '{winner}'" in error["message"]
    assert app.repos.environments.find_by_fhir_base_url(url).id == winner


def test_a_double_clicked_save_on_the_new_environment_form_shows_already_exists(
        app: Any, admins: list[PortalUser], epic: str) -> None:
    env_id = f"race-f{uuid.uuid4().hex[:8]}"
    form = {"id": env_id, "kind": "test", "display_name": "Contoso Health", "fhir_base_urls": fhir_url(epic),
            "epic_client_id": "vv-test-client", "time_zone": "America/Chicago"}

    def post(user: PortalUser) -> requests.Response:
        return user.session.post(user.base + "/api/portal/environments", data={**form, "csrf_token": user.csrf},
                                 allow_redirects=False)

    first, second = at_once([lambda: post(admins[0]), lambda: post(admins[0])])
    assert sorted([first.status_code, second.status_code]) == [303, 409], (first.text, second.text)
    refused = first if first.status_code == 409 else second
    assert f"An environment &#39;{env_id}&#39; already exists" in refused.text
    assert audit_actions(app, env_id, "environment.create") == 1


# ---- certificates --------------------------------------------------------------------------------------------
def test_concurrent_certificate_uploads_keep_every_one_answered_201_and_the_cap_of_two(
        app: Any, admins: list[PortalUser], epic: str) -> None:
    created = admins[0].send("POST", "/api/config/environments", body(epic, f"race-c{uuid.uuid4().hex[:8]}"))
    assert created.status_code == 201, created.text
    env_id = created.json()["id"]
    path = f"/api/config/environments/{env_id}/certificates"
    certs = [signer().cert_pem for _ in range(4)]
    answers = at_once([lambda u=u, c=c: u.send("POST", path, data=c, headers={"Content-Type": "application/x-pem-file"})
                       for u, c in zip(admins[:4], certs, strict=True)])

    added = {a.json()["thumbprintSha256"] for a in answers if a.status_code == 201}
    stored = {c["thumbprintSha256"] for c in admins[0].get(f"/api/config/environments/{env_id}").json()["certificates"]}
    assert added == stored and len(stored) == 2, [a.text for a in answers]
    for refused in (a for a in answers if a.status_code != 201):
        assert refused.status_code == 422 and problem_code(refused) == "CERTIFICATE_REFUSED"
        assert "already has 2 certificates" in refused.json()["detail"]
    assert audit_actions(app, env_id, "certificate.add") == 2  # only what was stored


def test_two_concurrent_uploads_both_stored(app: Any, admins: list[PortalUser], epic: str) -> None:
    created = admins[0].send("POST", "/api/config/environments", body(epic, f"race-d{uuid.uuid4().hex[:8]}"))
    env_id = created.json()["id"]
    path = f"/api/config/environments/{env_id}/certificates"
    answers = at_once([lambda u=u: u.send("POST", path, data=signer().cert_pem,
                                          headers={"Content-Type": "application/x-pem-file"}) for u in admins[:2]])
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert len(app.portal.environments.get(env_id).hl7_certificates) == 2


# ---- PATCH without If-Match --------------------------------------------------------------------------------
def test_concurrent_patches_without_if_match_are_each_applied_to_the_newest_version(
        app: Any, admins: list[PortalUser], epic: str) -> None:
    created = admins[0].send("POST", "/api/config/environments", body(epic, f"race-p{uuid.uuid4().hex[:8]}"))
    env_id = created.json()["id"]
    path = f"/api/config/environments/{env_id}"
    changes = [{"display_name": "Fabrikam Clinic"}, {"time_zone": "Europe/Berlin"}, {"default_region": "DE"},
               {"conference_id_field": "ZCH-3"}, {"writeback_vendor_name": "Fabrikam"},
               {"report_clinician_names": True}]
    answers = at_once([lambda u=u, c=c: u.send("PATCH", path, c) for u, c in zip(admins, changes, strict=True)])

    assert [a.status_code for a in answers] == [200] * len(changes), [a.text for a in answers]
    stored = app.portal.environments.get(env_id).to_doc()
    for change in changes:
        for name, value in change.items():
            assert stored[name] == value, name
    assert audit_actions(app, env_id, "environment.update") == len(changes)


# ---- forced interleavings (in process) ---------------------------------------------------------------------
ADMIN = Principal(user_id="local:admin", name="admin@contoso.example", roles=frozenset({"Admin"}), source="local-dev")


def test_a_certificate_add_that_loses_the_race_is_added_to_the_newest_list(app: Any, environment_id: str) -> None:
    config = make_environment(app, environment_id, hl7_certificates=())
    repo = app.repos.environments
    original = repo.put
    first, second = signer().cert_pem, signer().cert_pem
    sneaked: list[bool] = []

    def put_after_another_save(after: Any, *, version: str | None = None) -> None:
        if not sneaked:  # another admin's upload lands between our read and our write
            sneaked.append(True)
            original(dataclasses.replace(config, hl7_certificates=(first.decode(),)))
        original(after, version=version)

    repo.put = put_after_another_save
    try:
        app.portal.certificates.add(environment_id, second, ADMIN)
    finally:
        del repo.put
    stored = app.portal.environments.get(environment_id).hl7_certificates
    assert len(stored) == 2 and first.decode().strip() in [s.strip() for s in stored]


def test_a_patch_with_a_stale_version_is_refused_not_reapplied(app: Any, environment_id: str) -> None:
    from lib.config.environments import EditConflict

    make_environment(app, environment_id, fhir_base_urls=(f"https://fhir.contoso.example/{environment_id}/api/FHIR/R4",))
    _, version = app.portal.environments.get_versioned(environment_id)
    app.portal.environments.set_disabled(environment_id, True, "", ADMIN)
    with pytest.raises(EditConflict) as refused:
        app.portal.environments.update(environment_id, {"display_name": "Late"}, ADMIN, version=version)
    assert refused.value.stale
    assert app.portal.environments.get(environment_id).display_name == "Contoso Health"


def test_a_claim_left_by_a_crashed_save_blocks_the_url_only_for_the_lease(app: Any, environment_id: str) -> None:
    from lib.store.environments import ConfigurationConflict, EnvironmentRepository

    url = f"https://fhir.contoso.example/{environment_id}/api/FHIR/R4"
    claims = app.store.container("fhir_url_claims")
    now = datetime.now(UTC)
    # a save of "ghost" claimed the URL and died before writing its environment
    claims.upsert_item({"id": claim_id(url), "url": normalised(url), "environmentId": "ghost-" + environment_id,
                        "claimedAt": now.isoformat()})
    with pytest.raises(ConfigurationConflict, match="is being saved for environment 'ghost-"):
        make_environment(app, environment_id, fhir_base_urls=(url,))
    later = EnvironmentRepository(app.store, wall=lambda: now + timedelta(seconds=61))
    later.create(dataclasses.replace(_plain(environment_id), fhir_base_urls=(url,)))
    assert claims.read_item(claim_id(url), claim_id(url))["environmentId"] == environment_id
    assert app.repos.environments.find_by_fhir_base_url(url).id == environment_id


def test_a_url_claim_is_case_blind_in_the_host_and_released_when_the_url_leaves(app: Any, environment_id: str) -> None:
    from lib.store.environments import ConfigurationConflict

    url = f"https://FHIR.contoso.example/{environment_id}/api/FHIR/R4"
    config = make_environment(app, environment_id, fhir_base_urls=(url,))
    with pytest.raises(ConfigurationConflict):
        make_environment(app, environment_id + "-b", fhir_base_urls=(url.replace("FHIR.contoso", "fhir.contoso"),))
    app.repos.environments.put(dataclasses.replace(config, fhir_base_urls=(url + "x/api/FHIR/R4",)))
    make_environment(app, environment_id + "-c", fhir_base_urls=(url,))  # released: free at once
    assert app.repos.environments.find_by_fhir_base_url(url).id == environment_id + "-c"


def test_an_environment_whose_url_another_claims_can_still_be_disabled(app: Any, environment_id: str) -> None:
    """Two environments saved sharing a URL (before claims existed) no longer block disabling either."""
    url = f"https://fhir.contoso.example/{environment_id}/api/FHIR/R4"
    make_environment(app, environment_id, fhir_base_urls=(url,))
    legacy = dataclasses.replace(_plain(environment_id + "-old"), fhir_base_urls=(url,))
    app.store.container("environments").upsert_item(legacy.to_doc())  # written without a claim
    changed = app.portal.environments.set_disabled(legacy.id, True, "shares a URL", ADMIN)
    assert changed.disabled
    assert app.repos.environments.find_by_fhir_base_url(url).id == environment_id  # the claim decides


def _plain(env_id: str) -> Any:
    from lib.models import EnvironmentConfig

    return EnvironmentConfig(id=env_id, kind="test", display_name="Contoso Health", fhir_base_urls=(),
                             approved=False, epic_client_id="test-client")
