"""Environment look-ups under a flood of unknown IDs: bounded caches, a rate-limited keep of their bodies."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from lib.scheduling.intake import IntakeService
from lib.scheduling.keep_limit import KeepLimiter
from lib.store.environments import CACHE_SIZE, UNKNOWN_CACHE_SIZE, EnvironmentRepository
from local.siu_builder import siu
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_unknown_ids_is_remembered_only_up_to_the_small_bound(app):
    repo = EnvironmentRepository(app.store)
    for i in range(UNKNOWN_CACHE_SIZE + 36):
        assert repo.get(f"nobody-{i}") is None
    assert repo.cached() == (0, UNKNOWN_CACHE_SIZE)
    assert UNKNOWN_CACHE_SIZE < CACHE_SIZE


def test_a_cached_environment_is_read_again_once_it_is_older_than_the_cache_age(app, environment_id):
    clock = FakeMonotonic()
    repo = EnvironmentRepository(app.store, cache_seconds=30, monotonic=clock)
    config = make_environment(app, environment_id)
    assert repo.get(environment_id).display_name == "Contoso Health"
    app.store.container("environments").upsert_item(
        dataclasses.replace(config, display_name="Renamed Health").to_doc())  # another instance's change
    clock.now += 29
    assert repo.get(environment_id).display_name == "Contoso Health"
    clock.now += 2
    assert repo.get(environment_id).display_name == "Renamed Health"


def test_an_unknown_id_is_forgotten_after_a_few_seconds_so_a_new_environment_is_found(app, environment_id):
    clock = FakeMonotonic()
    repo = EnvironmentRepository(app.store, monotonic=clock)
    assert repo.get(environment_id) is None
    make_environment(app, environment_id)  # through another repository: this one is not told
    assert repo.get(environment_id) is None
    clock.now += 6
    assert repo.get(environment_id) is not None


def test_launch_routing_reads_the_store_once_per_cache_age_not_once_per_launch(app, environment_id):
    """A launch is routed by its URL's claim (a point read), an unclaimed ``iss`` by the cached list: five
    launches of each cost what one does, until the cache ages."""
    clock = FakeMonotonic()
    repo = EnvironmentRepository(app.store, monotonic=clock)
    url = f"https://fhir.example.org/{environment_id}/api/FHIR/R4"
    make_environment(app, environment_id, fhir_base_urls=(url,))
    calls: list[str] = []
    patched = []
    for container in (repo._container, repo._claims._container):
        for name in ("query_items", "read_item"):
            original = getattr(container, name)

            def counted(*args, _original=original, _name=name, **kwargs):
                calls.append(_name)
                return _original(*args, **kwargs)

            setattr(container, name, counted)
            patched.append((container, name, original))
    try:
        for _ in range(5):
            assert repo.find_by_fhir_base_url(url).id == environment_id
            assert repo.find_by_fhir_base_url(url + "/other") is None
        # url: its claim and its environment; url/other: no claim, then the list of environments (once)
        assert sorted(calls) == ["query_items", "read_item", "read_item", "read_item"]
        clock.now += 31
        assert repo.find_by_fhir_base_url(url).id == environment_id
        assert len(calls) == 6
    finally:
        for container, name, original in patched:
            setattr(container, name, original)


def test_bodies_sent_to_unknown_environments_are_kept_only_up_to_the_budget(app, clock):
    clock.set(NOW)
    r = app.repos
    intake = IntakeService(
        environments=r.environments, visits=r.visits, contacts=r.contacts, outbox=r.outbox,
        links=r.links, processed=r.processed, rejected=r.rejected, verifier=app.intake._verifier,
        clock=app.clock, patient_id_key=app.intake._patient_id_key, unknown_keeps=KeepLimiter(per_minute=3),
    )
    answers = [intake.handle("no-such-env-flood", siu("S12", csn="1", start=NOW, control_id=f"F{i}", sent=NOW), {})
               for i in range(5)]
    assert [a.status for a in answers] == [404] * 5
    kept = ["rejectedMessageId" in json.loads(a.body) for a in answers]
    assert kept == [True, True, True, False, False]


def test_the_warm_up_preload_serves_the_first_look_up_without_a_store_call(app, environment_id):
    from local.store_calls import StoreCallCounter

    make_environment(app, environment_id)
    repo = EnvironmentRepository(app.store)
    preloaded = {config.id for config in repo.preload()}
    assert len(preloaded) <= CACHE_SIZE
    if environment_id not in preloaded:  # a shared test server holds more than the bound
        repo.get(environment_id)
    counter = StoreCallCounter(app.settings.cosmos_endpoint)
    with counter.installed():
        assert repo.get(environment_id).id == environment_id
    assert counter.total == 0
