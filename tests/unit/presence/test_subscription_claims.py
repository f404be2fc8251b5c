"""One Graph subscription per visit when runs overlap, without services: a run whose claim lapsed while Graph was
slow, and which finds another run's subscription recorded, deletes its own; a reschedule written meanwhile keeps
it. (The races themselves run against the Graph stand-in in tests/integration/test_presence_after_the_visit.py.)"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lib.clock import FixedClock
from lib.presence.subscriptions import PresenceSubscriptions
from lib.store.errors import ConcurrencyConflict
from lib.store.graph_subscriptions import GraphSubscription

NOW = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)


class _EtagRepo:
    """ETag-guarded like Cosmos DB: an update of a stale copy raises ConcurrencyConflict."""

    def __init__(self) -> None:
        self.docs: dict[str, GraphSubscription] = {}
        self._n = 0

    def _stamp(self, sub: GraphSubscription) -> GraphSubscription:
        self._n += 1
        self.docs[sub.id] = dataclasses.replace(sub, etag=str(self._n))
        return self.docs[sub.id]

    def create_once(self, sub: GraphSubscription) -> tuple[GraphSubscription, bool]:
        if sub.id in self.docs:
            return self.docs[sub.id], False
        return self._stamp(sub), True

    def get(self, doc_id: str) -> GraphSubscription | None:
        return self.docs.get(doc_id)

    def update(self, sub: GraphSubscription, **changes: Any) -> GraphSubscription:
        if self.docs[sub.id].etag != sub.etag:
            raise ConcurrencyConflict("changed")
        return self._stamp(dataclasses.replace(sub, **changes))


class _Graph:
    """Creates subscriptions; ``meanwhile`` runs while the POST is in flight (another run, a reschedule)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.meanwhile: Any = None

    def create(self, **_: Any) -> tuple[str, datetime]:
        graph_id = f"sub-{len(self.created) + 1}"
        self.created.append(graph_id)
        if self.meanwhile is not None:
            self.meanwhile()
        return graph_id, NOW + timedelta(days=1)

    def delete(self, graph_id: str) -> None:
        self.deleted.append(graph_id)


@dataclasses.dataclass
class _Certificate:
    certificate_b64: str = "MII="
    certificate_id: str = "vv-1"


def _pending(repo: _EtagRepo, graph: _Graph) -> tuple[PresenceSubscriptions, GraphSubscription]:
    service = PresenceSubscriptions(repo=repo, graph=graph, certificate=_Certificate(),  # type: ignore[arg-type]
                                    public_base_url="https://vv.example", clock=FixedClock(NOW))
    doc, _ = repo.create_once(GraphSubscription(id="mce-1", appointment_key="env-1|4455", resource="/r", secret="s",
                                                end_after_utc=NOW + timedelta(hours=3)))
    return service, doc


def test_a_run_whose_claim_was_overtaken_deletes_its_own_subscription_and_keeps_the_recorded_one():
    repo, graph = _EtagRepo(), _Graph()
    service, doc = _pending(repo, graph)

    def another_run_recorded_its_own() -> None:
        current = repo.get(doc.id)
        assert current is not None
        repo.update(current, state="active", graph_id="sub-other", claimed_utc=None)

    graph.meanwhile = another_run_recorded_its_own
    kept = service._activate(doc)
    assert (kept.state, kept.graph_id) == ("active", "sub-other")
    assert graph.created == ["sub-1"] and graph.deleted == ["sub-1"]
    assert repo.docs[doc.id].graph_id == "sub-other"


def test_a_reschedule_written_while_graph_answers_keeps_the_new_subscription():
    repo, graph = _EtagRepo(), _Graph()
    service, doc = _pending(repo, graph)
    later = NOW + timedelta(days=2)

    def rescheduled() -> None:
        current = repo.get(doc.id)
        assert current is not None
        repo.update(current, end_after_utc=later)

    graph.meanwhile = rescheduled
    kept = service._activate(doc)
    assert (kept.state, kept.graph_id, kept.end_after_utc, kept.claimed_utc) == ("active", "sub-1", later, None)
    assert graph.deleted == []


def test_a_run_finding_a_fresh_claim_does_not_call_graph():
    repo, graph = _EtagRepo(), _Graph()
    service, doc = _pending(repo, graph)
    claimed = repo.update(doc, claimed_utc=NOW - timedelta(seconds=30))
    with pytest.raises(ConcurrencyConflict):
        service._activate(claimed)
    assert graph.created == []
