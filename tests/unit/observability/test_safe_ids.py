"""MSH-10 in logs (lib.observability.safe_ids): counters and UUIDs as they are, anything else as a keyed hash
(HMAC-SHA256 under the deployment's LOG_ID_KEY), stable per key and useless without it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import string

import pytest

from lib.observability import safe_ids
from lib.observability.safe_ids import log_control_id, use_key
from lib.settings import SettingsError, load_settings

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture(autouse=True)
def _restore_key():
    saved = safe_ids._key
    use_key(KEY)
    yield
    safe_ids._key = saved


def keyed(value: str, key: bytes = KEY) -> str:
    return "#" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:12]


@pytest.mark.parametrize("value", ["C1", "7001234-1", "MSG00001", "2010052711090000",
                                   "3f2a9b1c-4d5e-6f70-8192-a3b4c5d6e7f8"])
def test_counters_and_uuids_are_logged_as_they_are(value):
    assert log_control_id(value) == value


@pytest.mark.parametrize("value", ["JOHNSMITH-DOB19800101", "SMITH^JOHN", "Jane Doe 555-0123", "A" * 41 + "1", "AB",
                                   "ZQ"])
def test_anything_else_is_logged_as_a_short_hash_under_the_deployment_key(value):
    assert log_control_id(value) == keyed(value)
    assert value not in log_control_id(value)


@pytest.mark.parametrize("value", ["2015550123", "12345678901", "7001234567-1", "7001234567.2", "1-2015550123",
                                   "201-555-0123", "201.555.0123", "555-0123", "MSG-2015550123"])
def test_a_counter_the_log_redaction_would_mask_is_logged_as_its_keyed_hash(value):
    from lib.observability.redaction import redact

    assert redact(f"msh10={value}") != f"msh10={value}"  # the redaction takes it for a phone number
    assert log_control_id(value) == keyed(value)
    assert redact(f"hl7 accepted msh10={log_control_id(value)} event=S12") == \
        f"hl7 accepted msh10={keyed(value)} event=S12"  # the log shows the hash, as log-id prints it


@pytest.mark.parametrize("value", ["7001234-1", "123456789", "123456789012", "4294967295", "MSG2015550123"])
def test_a_counter_the_log_redaction_keeps_is_logged_as_it_is(value):
    from lib.observability.redaction import redact

    assert log_control_id(value) == value == redact(value)


def test_the_same_value_under_the_same_key_gives_the_same_hash_so_log_lines_can_be_matched():
    first = log_control_id("SMITH^JOHN")
    use_key(bytes(KEY))  # another process of the same deployment
    assert log_control_id("SMITH^JOHN") == first
    use_key(OTHER_KEY)  # another deployment
    assert log_control_id("SMITH^JOHN") == keyed("SMITH^JOHN", OTHER_KEY) != first


def test_a_short_control_id_cannot_be_found_from_its_hash_without_the_key():
    # Every two-letter control ID, hashed the way an attacker without the key would: none matches the log.
    logged = {log_control_id(a + b) for a, b in itertools.product(string.ascii_uppercase, repeat=2)}
    unkeyed = {"#" + hashlib.sha256((a + b).encode()).hexdigest()[:12]
               for a, b in itertools.product(string.ascii_uppercase, repeat=2)}
    assert len(logged) == 26 * 26 and not logged & unkeyed


def test_a_key_shorter_than_32_bytes_is_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        use_key(b"short")


def test_a_missing_control_id_is_a_dash():
    assert log_control_id(None) == "-" and log_control_id("") == "-"


# ---- the setting ---------------------------------------------------------------------------------------------
LINK = base64.b64encode(bytes(32)).decode()
BASE = {"COSMOS_ENDPOINT": "https://cosmos.example/", "LINK_SIGNING_KEY": LINK, "PUBLIC_BASE_URL": "https://app.example"}


def test_log_id_key_is_read_from_its_setting():
    key = bytes(range(40))
    assert load_settings({**BASE, "LOG_ID_KEY": base64.b64encode(key).decode()}).log_id_key == key


@pytest.mark.parametrize("value", [None, "", "@Microsoft.KeyVault(VaultName=v;SecretName=log-id-key)"])
def test_without_it_the_key_is_derived_from_the_link_signing_key_stable_and_distinct(value):
    environ = {**BASE, **({"LOG_ID_KEY": value} if value is not None else {})}
    derived = load_settings(environ).log_id_key
    assert len(derived) == 32 and derived != base64.b64decode(LINK)
    assert load_settings(environ).log_id_key == derived  # every instance of the deployment agrees
    other_link = base64.b64encode(bytes(range(32))).decode()
    assert load_settings({**environ, "LINK_SIGNING_KEY": other_link}).log_id_key != derived


@pytest.mark.parametrize(("value", "message"), [("not base64!", "must be base64"),
                                                (base64.b64encode(b"x" * 16).decode(), "must hold at least 32 bytes")])
def test_a_malformed_log_id_key_is_refused_naming_the_setting_not_its_value(value, message):
    with pytest.raises(SettingsError, match=f"LOG_ID_KEY {message}") as refused:
        load_settings({**BASE, "LOG_ID_KEY": value})
    assert value not in str(refused.value)


def test_the_app_keys_the_hash_with_its_setting_when_its_services_are_built():
    from functions.dependencies import Services

    key = bytes(range(50, 90))
    Services({**BASE, "LOG_ID_KEY": base64.b64encode(key).decode()})
    assert log_control_id("SMITH^JOHN") == keyed("SMITH^JOHN", key)
