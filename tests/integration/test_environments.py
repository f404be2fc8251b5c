"""Environment configuration rules (lib.store.environments)."""

from __future__ import annotations

import dataclasses

import pytest

from lib.store.environments import ConfigurationConflict
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
