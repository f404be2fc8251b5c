"""Shared fixtures: the local services (test profile) and the app's services wired to them.

Integration tests use the real Azure SDKs against Azurite, the Cosmos-compatible server and the stand-ins,
started once per test session by the project's own launcher (``local.services``). Each test works in its
own environment ID, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The real HL7 samples (provenance in their SOURCES.md), part of this repository.
SAMPLES = ROOT / "tests" / "fixtures" / "hl7-samples"


@pytest.fixture(scope="session")
def service_settings() -> Iterator[dict[str, str]]:
    """Start the ``test`` profile's services (or reuse running ones) and yield the app settings for them."""
    from local import services

    handle = services.start("test", ROOT)
    try:
        yield services.settings_for("test", ROOT)
    finally:
        handle.stop()  # stops only what this session started


@pytest.fixture(scope="session")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's ``DEV_CLOCK_FILE``: empty means the system clock."""
    path = tmp_path_factory.mktemp("clock") / "now.txt"
    path.write_text("")
    return path


@pytest.fixture
def clock(clock_file: Path) -> Iterator[object]:
    """Set the app's "now" for one test: ``clock.set(datetime)``; back to the system clock afterwards."""

    class _Clock:
        def set(self, at: datetime) -> None:
            clock_file.write_text(at.isoformat())

    yield _Clock()
    clock_file.write_text("")


@pytest.fixture(scope="session")
def app(service_settings: dict[str, str], clock_file: Path) -> Iterator[object]:
    """The app's :class:`functions.dependencies.Services`, configured for the test services."""
    from functions import dependencies

    saved = dict(os.environ)
    os.environ.update(service_settings)
    os.environ["DEV_CLOCK_FILE"] = str(clock_file)
    dependencies.reset()
    svc = dependencies.services()
    svc.store.ensure_schema()
    yield svc
    dependencies.reset()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def environment_id() -> str:
    """A fresh environment ID for one test."""
    hex_ = uuid.uuid4().hex
    return f"t-{hex_[:5]}-e{hex_[5:10]}"  # never ten digits in a row: log redaction would read a phone number
