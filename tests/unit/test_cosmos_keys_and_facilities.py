"""Cosmos-safe keys, capped ``ttl`` values and the environment's sending-facility binding (pure rules)."""

from __future__ import annotations

import dataclasses

import pytest

from lib.models import MAX_COSMOS_TTL, EnvironmentConfig, appointment_key, cosmos_ttl, safe_key
from lib.store.messages import processed_id


def config(**kw) -> EnvironmentConfig:
    base = EnvironmentConfig(id="e1", kind="test", display_name="X", fhir_base_urls=(), approved=True,
                             epic_client_id="c")
    return dataclasses.replace(base, **kw)


def test_plain_ids_stay_readable():
    assert appointment_key("env-1", "36996") == "env-1|36996"
    assert processed_id("env-1", "GHH^2.16.840^ISO", "MSG0001") == "env-1|GHH^2.16.840^ISO|MSG0001"


@pytest.mark.parametrize("unsafe", ["A/1", "B\\2", "C?3", "D#4", "~E5", "F" * 200, "tab\there"])
def test_ids_cosmos_refuses_get_a_hashed_key_that_keeps_the_environment_readable(unsafe):
    key = appointment_key("env-1", unsafe)
    assert key.startswith("env-1|~") and len(key) == len("env-1|~") + 64
    assert not set("/\\?#") & set(key)
    assert appointment_key("env-1", unsafe) == key  # deterministic


def test_hashed_keys_never_collide_with_plain_ones_or_each_other():
    plain = appointment_key("env-1", "A1")
    assert len({plain, appointment_key("env-1", "A/1"), appointment_key("env-1", "A?1"),
                appointment_key("env-2", "A/1")}) == 4


def test_key_length_limit_is_counted_on_the_joined_key():
    assert safe_key("e", "x" * 198) == "e|" + "x" * 198  # 200 characters: kept
    assert safe_key("e", "x" * 199).startswith("e|~")


@pytest.mark.parametrize(("seconds", "ttl"), [(0, 60), (3600.7, 3600), (10**12, MAX_COSMOS_TTL), (-5, 60)])
def test_ttl_is_between_a_minute_and_the_cosmos_maximum(seconds, ttl):
    assert cosmos_ttl(seconds) == ttl


def test_sending_facilities_default_to_no_binding_and_round_trip_through_the_document():
    assert config().hl7_sending_facilities == ()
    bound = config(hl7_sending_facilities=("GHH", "LAB^2.16.840.1^ISO"))
    assert EnvironmentConfig.from_doc(bound.to_doc()).hl7_sending_facilities == ("GHH", "LAB^2.16.840.1^ISO")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("",), "entry 1: 1 to 180 characters"),
        (("A" * 181,), "entry 1: 1 to 180 characters"),
        ((" GHH",), "entry 1: printable characters"),
        (("GHH|X",), "entry 1: printable characters"),
        (("OK", "A~B"), "entry 2: printable characters"),
        (("GHH", "ghh"), "entry 2 repeats an earlier entry"),
        (tuple(f"F{i}" for i in range(21)), "at most 20 sending facilities"),
        (["GHH"], "must be a list of text values"),
    ],
)
def test_invalid_sending_facilities_are_refused_with_the_entry_named(values, message):
    with pytest.raises(ValueError, match=message):
        config(hl7_sending_facilities=values)
