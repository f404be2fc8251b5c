"""Reading settings (lib.settings): required names, Key Vault PEM values, shapes."""

from __future__ import annotations

import base64

import pytest

from lib.settings import SettingsError, load_settings

BASE = {
    "COSMOS_ENDPOINT": "https://cosmos.example.org:443/",
    "PUBLIC_BASE_URL": "https://visits.example.org/",
    "LINK_SIGNING_KEY": base64.b64encode(bytes(32)).decode(),
}
PEM = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"


def test_minimal_settings_load_with_defaults():
    s = load_settings(BASE)
    assert s.public_base_url == "https://visits.example.org"
    assert s.cosmos_database == "virtualvisits"
    assert s.hl7_max_bytes == 1048576
    assert s.tls_verify is True


@pytest.mark.parametrize("missing", sorted(BASE))
def test_missing_required_setting_names_it(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        load_settings(env)


def test_short_link_signing_key_is_refused():
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        load_settings({**BASE, "LINK_SIGNING_KEY": base64.b64encode(bytes(16)).decode()})


def test_pem_settings_from_key_vault_are_read_as_bytes():
    s = load_settings({**BASE, "SMART_PRIVATE_KEYS": PEM, "GRAPH_CLIENT_CERT": PEM})
    assert s.smart_private_keys_pem == PEM.strip().encode()  # surrounding whitespace is trimmed
    assert s.graph_client_cert_pem == PEM.strip().encode()


def test_unresolved_key_vault_reference_is_refused_with_the_fix():
    ref = "@Microsoft.KeyVault(VaultName=kv;SecretName=smart-private-keys)"
    with pytest.raises(SettingsError, match=r"unresolved Key Vault reference.*Key Vault Secrets User"):
        load_settings({**BASE, "SMART_PRIVATE_KEYS": ref})


def test_pem_setting_without_a_pem_block_is_refused():
    with pytest.raises(SettingsError, match="GRAPH_CLIENT_CERT must hold a PEM"):
        load_settings({**BASE, "GRAPH_CLIENT_CERT": "not a pem"})


def test_production_smart_keys_and_encrypted_link_keys_are_read():
    import base64

    key = base64.b64encode(bytes(32)).decode()
    s = load_settings({**BASE, "SMART_PRIVATE_KEYS_PRODUCTION": PEM, "EPIC_CAL_KEYS": f'{{"prod": "{key}"}}',
                       "SMART_PRIVATE_KEYS_PRODUCTION_FILE": "/keys/prod.pem"})
    assert s.smart_private_keys_production_pem == PEM.strip().encode()
    assert s.epic_cal_keys == {"prod": bytes(32)}
    assert str(s.smart_private_keys_production_file) == "/keys/prod.pem"


def test_optional_key_vault_secrets_that_do_not_resolve_read_as_unset():
    ref = "@Microsoft.KeyVault(VaultName=kv;SecretName=epic-cal-keys)"
    s = load_settings({**BASE, "SMART_PRIVATE_KEYS_PRODUCTION": ref, "EPIC_CAL_KEYS": ref})
    assert s.smart_private_keys_production_pem is None and s.epic_cal_keys == {}


@pytest.mark.parametrize("value", ["not json", "[]", '{"e": "!!"}', '{"e": "AAAA"}'])
def test_malformed_encrypted_link_keys_are_refused(value):
    with pytest.raises(SettingsError) as err:
        load_settings({**BASE, "EPIC_CAL_KEYS": value})
    assert "EPIC_CAL_KEYS" in str(err.value) and value not in str(err.value)
