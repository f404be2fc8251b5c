"""Environment configuration rules (lib.store.environments)."""

from __future__ import annotations

import dataclasses

import pytest

from lib.store.environments import ConfigurationConflict, EnvironmentRepository
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration


def test_a_fhir_base_url_can_belong_to_one_environment_only(app, environment_id):
    url = f"https://epic.example.org/{environment_id}/api/FHIR/R4"
    make_environment(app, environment_id, fhir_base_urls=(url,))
    with pytest.raises(ConfigurationConflict, match=f"already used by environment '{environment_id}'"):
        make_environment(app, environment_id + "-b", fhir_base_urls=(url,))
    assert app.repos.environments.find_by_fhir_base_url(url).id == environment_id


def test_an_environment_may_be_saved_again_with_its_own_urls(app, environment_id):
    url = f"https://epic.example.org/{environment_id}/api/FHIR/R4"
    config = make_environment(app, environment_id, fhir_base_urls=(url,))
    app.repos.environments.put(dataclasses.replace(config, display_name="Renamed"))
    assert app.repos.environments.get(environment_id).display_name == "Renamed"


def test_the_portal_reads_one_environment_with_one_point_read_whatever_else_is_stored(app, environment_id):
    from lib.config.environments import NotFound
    from local.store_calls import StoreCallCounter

    admin = app.portal.environments
    for n in range(3):  # others stored beside it: a scan would read them too
        make_environment(app, f"{environment_id}-o{n}")
    make_environment(app, environment_id, display_name="Before")
    # Saved by another instance: this process's cache does not know, the portal must still show it.
    other = EnvironmentRepository(app.store)
    other.put(dataclasses.replace(other.get(environment_id), display_name="Saved elsewhere"))
    counter = StoreCallCounter(app.settings.cosmos_endpoint)
    with counter.installed():
        assert admin.get(environment_id).display_name == "Saved elsewhere"
    calls = counter.snapshot()
    assert (calls.get("read", 0), calls.get("query", 0)) == (1, 0)

    counter.reset()
    with counter.installed(), pytest.raises(NotFound):
        admin.get(f"{environment_id}-none")
    assert (counter.snapshot().get("read", 0), counter.snapshot().get("query", 0)) == (1, 0)


@pytest.mark.parametrize("bad_id", ["a/b", "a?b", "a#b", "a\\b", "", "x" * 256, "tab\there"])
def test_an_id_that_cannot_name_a_document_is_not_found_without_a_store_call(app, bad_id):
    from lib.config.environments import NotFound
    from local.store_calls import StoreCallCounter

    counter = StoreCallCounter(app.settings.cosmos_endpoint)
    with counter.installed(), pytest.raises(NotFound):
        app.portal.environments.get(bad_id)
    assert counter.total == 0


def test_creating_an_environment_whose_id_exists_is_refused(app, environment_id):
    from lib.config.access import Principal
    from lib.store.environments import EnvironmentExists

    make_environment(app, environment_id)
    actor = Principal(user_id="admin-1", name="Admin One", roles=frozenset({"Admin"}), source="local-dev")
    body = {"id": environment_id, "kind": "test", "display_name": "Contoso Health",
            "fhir_base_urls": [f"https://fhir.example.org/{environment_id}-new/api/FHIR/R4"],
            "epic_client_id": "test-client"}
    with pytest.raises(EnvironmentExists):  # the API answers 409 ALREADY_EXISTS, the form says so at the ID
        app.portal.environments.create(body, actor)
    stored = app.repos.environments.get(environment_id, fresh=True)
    assert f"https://fhir.example.org/{environment_id}-new/api/FHIR/R4" not in stored.fhir_base_urls  # not overwritten
