"""LaunchService, go-live cases: the clinician's one-time Microsoft 365 sign-in and organizers, environment
and FHIR-version checks, keys per environment kind and ES384, Epic's encrypted link, and the attacks of the
issue's "Proof" list that need the EHR to misbehave (expired / mis-signed id_token, replayed code, a CSN hint
naming another visit). The same flows run over HTTP against the strict stand-ins in
tests/integration/test_launch_flow.py; these use the in-memory world of test_launch.py.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from lib.models import Appointment, EnvironmentConfig
from lib.smart.encrypted_link import encrypt_link, format_timestamp
from lib.smart.errors import LaunchError
from lib.smart.keys import SmartKeys
from lib.store.users import UserMapping
from lib.teams.organizers import DirectoryOrganizerResolver
from lib.visits.pages import Redirect
from tests.unit.smart.keys_for_tests import ec_pem, rsa_pem
from tests.unit.visits.test_launch import BASE, CSN, GRAPH, NOW, PUBLIC, World, cookie_of

CLINICIAN_OID = "0f0e0d0c-1111-4222-8333-444455556666"


# ---- fakes -------------------------------------------------------------------------------------------------
class Users:
    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], UserMapping] = {}

    def get(self, environment_id: str, ehr_user_id: str) -> UserMapping | None:
        return self.docs.get((environment_id, ehr_user_id))

    def put(self, mapping: UserMapping) -> None:
        self.docs[(mapping.environment_id, mapping.ehr_user_id)] = mapping


class SignInStates:
    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self._n = 0

    def create(self, state: Any) -> None:
        self._n += 1
        self.docs[state.state] = dataclasses.replace(state, etag=str(self._n))

    def get(self, state: str) -> Any:
        return self.docs.get(state)

    def consume(self, state: Any) -> bool:
        stored = self.docs.get(state.state)
        if stored is None or stored.etag != state.etag:
            return False
        del self.docs[state.state]
        return True


class EntraSignIn:
    """Entra ID: ``begin`` gives an authorize URL; ``finish`` checks the state and returns the user's oid."""

    def __init__(self, oid: str = CLINICIAN_OID, error: LaunchError | None = None) -> None:
        self.oid = oid
        self.error = error
        self.redeemed: set[str] = set()

    def begin(self, *, state: str, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        assert redirect_uri == f"{PUBLIC}/api/launch/signin"
        flow = {"state": state, "code_verifier": "v"}
        return f"https://login.example.org/t/oauth2/v2.0/authorize?state={state}", flow

    def finish(self, flow: dict[str, Any], response: dict[str, str]) -> str:
        if self.error:
            raise self.error
        assert response["state"] == flow["state"]
        if response["code"] in self.redeemed:
            raise LaunchError("LAUNCH_EXPIRED")
        self.redeemed.add(response["code"])
        return self.oid


class UsedLinks:
    def __init__(self) -> None:
        self.claimed: set[str] = set()

    def claim(self, digest: str, *, expires: Any, now: Any) -> bool:
        if digest in self.claimed:
            return False
        self.claimed.add(digest)
        return True


def signin_world(**kwargs: Any) -> World:
    users = Users()
    world = World(env={"provider_signin": True}, users=users, signin=kwargs.pop("signin", EntraSignIn()),
                  signin_states=SignInStates(), organizers=DirectoryOrganizerResolver(users), **kwargs)
    world.users = users  # type: ignore[attr-defined]
    world.fake.on("POST", f"{GRAPH}/users/{CLINICIAN_OID}/onlineMeetings/createOrGet", (201, {
        "id": "m-clin", "joinWebUrl": "https://teams.example.org/l/meetup-join/clin",
        "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": False}}))
    return world


def launch_to_callback(world: World, **query: str) -> tuple[dict[str, str], str]:
    result = world.begin(**query)
    assert isinstance(result, Redirect)
    return {"code": "code-1", "state": world.authorize_params(result)["state"]}, cookie_of(result)


# ---- provider sign-in and organizers ------------------------------------------------------------------------
def test_a_clinicians_first_launch_signs_in_once_then_organizes_the_meeting():
    world = signin_world()
    callback, cookie = launch_to_callback(world)
    to_entra = world.service.complete(callback, cookie)
    assert to_entra.location.startswith("https://login.example.org/")
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(to_entra.location).query))["state"]
    assert world.events.docs == {}  # not in the meeting yet

    done = world.service.complete_signin({"code": "entra-code", "state": state}, cookie)
    assert done.location == "https://teams.example.org/l/meetup-join/clin"
    assert world.users.get("env1", "E1001").entra_object_id == CLINICIAN_OID  # type: ignore[attr-defined]
    meeting = world.appointments.get(f"env1|{CSN}").meeting
    assert meeting.organizer_id == CLINICIAN_OID
    (event,) = world.events.docs.values()
    assert (event.type, event.participant_id) == ("clinician_launched", "E1001")

    # Later launches go straight to the meeting.
    callback, cookie = launch_to_callback(world)
    again = world.service.complete(callback, cookie)
    assert again.location == "https://teams.example.org/l/meetup-join/clin"


def test_the_sign_in_callback_is_single_use_and_bound_to_the_browser():
    world = signin_world()
    callback, cookie = launch_to_callback(world)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(
        world.service.complete(callback, cookie).location).query))["state"]
    with pytest.raises(LaunchError) as err:
        world.service.complete_signin({"code": "c", "state": state}, "x" * 43)
    assert err.value.code == "STATE_BROWSER_MISMATCH"
    world.service.complete_signin({"code": "c", "state": state}, cookie)
    with pytest.raises(LaunchError) as err:
        world.service.complete_signin({"code": "c", "state": state}, cookie)
    assert err.value.code == "STATE_INVALID"


def test_a_failed_sign_in_says_what_the_admin_must_do():
    world = signin_world(signin=EntraSignIn(error=LaunchError("SIGNIN_FAILED")))
    callback, cookie = launch_to_callback(world)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(
        world.service.complete(callback, cookie).location).query))["state"]
    with pytest.raises(LaunchError) as err:
        world.service.complete_signin({"error": "consent_required", "state": state}, cookie)
    assert err.value.code == "SIGNIN_FAILED"
    assert "/api/launch/signin" in err.value.admin_hint and "User.Read" in err.value.admin_hint
    assert world.users.docs == {}  # type: ignore[attr-defined]


def test_without_sign_in_the_departments_fallback_organizer_is_used():
    world = World(env={"provider_signin": False, "department_organizers": {"10501101": "org-dept"}})
    world.fake.on("POST", f"{GRAPH}/users/org-dept/onlineMeetings/createOrGet", (201, {
        "id": "m-d", "joinWebUrl": "https://teams.example.org/l/meetup-join/dept",
        "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": False}}))
    callback, cookie = launch_to_callback(world, departmentId="10501101;;; ; ;;NONE;")
    assert world.service.complete(callback, cookie).location == "https://teams.example.org/l/meetup-join/dept"
    assert world.appointments.get(f"env1|{CSN}").meeting.organizer_id == "org-dept"


def test_a_second_clinician_and_a_relaunch_land_in_the_first_organizers_meeting():
    world = signin_world()
    world.users.put(UserMapping("env1", "E1001", CLINICIAN_OID, NOW))  # type: ignore[attr-defined]
    callback, cookie = launch_to_callback(world)
    first = world.service.complete(callback, cookie).location
    world.id_user = "Practitioner/E2002"  # an interpreter, not signed in yet, sign-in on
    world.users.put(UserMapping("env1", "E2002", "other-oid", NOW))  # type: ignore[attr-defined]
    callback, cookie = launch_to_callback(world)
    assert world.service.complete(callback, cookie).location == first
    assert sum(1 for c in world.fake.calls if c.url.endswith("/createOrGet")) == 1


# ---- environments, FHIR versions, keys ----------------------------------------------------------------------
def test_a_dstu2_iss_for_a_registered_r4_base_gets_its_own_code_without_network():
    world = World()
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"iss": f"{BASE}/api/FHIR/DSTU2", "launch": "x"}, None)
    assert err.value.code == "FHIR_VERSION_MISMATCH" and "DSTU2" in err.value.admin_hint
    assert world.fake.calls == []


def test_a_test_iss_through_a_production_launch_url_is_tenant_config_not_found():
    production = EnvironmentConfig(id="prod", kind="production", display_name="C", approved=True,
                                   fhir_base_urls=("https://ehr.example.org/prd/api/FHIR/R4",), epic_client_id="p")
    world = World(others=(production,))
    with pytest.raises(LaunchError) as err:
        world.begin(env="prod")
    assert err.value.code == "TENANT_CONFIG_NOT_FOUND"
    assert world.fake.calls == []
    with pytest.raises(LaunchError) as err:
        world.begin(env="nope")
    assert err.value.code == "ENVIRONMENT_NOT_CONFIGURED"
    assert isinstance(world.begin(env="env1"), Redirect)


def test_another_environment_of_the_same_kind_is_environment_mismatch():
    other = EnvironmentConfig(id="env2", kind="test", display_name="C", approved=True,
                              fhir_base_urls=("https://ehr.example.org/tst2/api/FHIR/R4",), epic_client_id="t2")
    with pytest.raises(LaunchError) as err:
        World(others=(other,)).begin(env="env2")
    assert err.value.code == "ENVIRONMENT_MISMATCH"


def test_the_environment_can_sign_its_assertions_with_es384():
    keys = SmartKeys.from_pem(rsa_pem("ours") + b"\n" + ec_pem("ours-ec"))
    world = World(env={"client_assertion_alg": "ES384"}, keys=keys)
    callback, cookie = launch_to_callback(world)
    world.service.complete(callback, cookie)
    (token_call,) = [c for c in world.fake.calls if c.url.endswith("/oauth2/token")]
    header = jwt.decode(token_call.form["client_assertion"], keys.signer("ES384")[0], algorithms=["ES384"]).header
    assert header["alg"] == "ES384"


def test_an_environment_asking_for_es384_without_an_ec_key_fails_before_the_ehr_round_trip():
    world = World(env={"client_assertion_alg": "ES384"})
    with pytest.raises(LaunchError) as err:
        world.begin()
    assert err.value.code == "SMART_KEYS_MISSING" and "P-384" in err.value.admin_hint
    assert world.fake.calls == []


def test_a_production_environment_signs_with_the_production_keys():
    asked: list[str] = []
    keys = SmartKeys.from_pem(rsa_pem("prod"))

    def keyring(kind: str) -> SmartKeys:
        asked.append(kind)
        return keys

    world = World(env={"kind": "production"})
    world.service._keys = keyring  # type: ignore[attr-defined]
    callback, cookie = launch_to_callback(world)
    world.service.complete(callback, cookie)
    assert set(asked) == {"production"}


# ---- attacks that need a misbehaving EHR ------------------------------------------------------------------
@pytest.mark.parametrize(("claims", "key"), [
    ({"exp": int((NOW - timedelta(minutes=10)).timestamp())}, None),   # expired
    ({}, RSAKey.import_key(rsa_pem("attacker"), {"kid": "epic-1"})),  # signed by someone else, same kid
    ({"nonce": "another-launch"}, None),                               # another launch's id_token
    ({"aud": "someone-else"}, None),
    ({"iss": "https://attacker.example.net/oauth2"}, None),
])
def test_a_bad_id_token_stops_the_launch_before_any_visit_is_touched(claims, key):
    world = World()
    world.id_claims = claims
    if key is not None:
        world.id_key = key
    callback, cookie = launch_to_callback(world)
    with pytest.raises(LaunchError) as err:
        world.service.complete(callback, cookie)
    assert err.value.code == "ID_TOKEN_INVALID"
    assert world.appointments.docs == {} and world.events.docs == {}
    assert not any("createOrGet" in c.url for c in world.fake.calls)


def test_a_code_the_ehr_refuses_as_used_is_launch_expired():
    world = World()
    world.fake.on("POST", f"{BASE}/oauth2/token", (400, {"error": "invalid_grant",
                                                        "error_description": "code already used"}))
    callback, cookie = launch_to_callback(world)
    with pytest.raises(LaunchError) as err:
        world.service.complete(callback, cookie)
    assert err.value.code == "LAUNCH_EXPIRED"


@pytest.mark.parametrize("owner", ["env1", "env2"])
def test_a_csn_hint_naming_another_visit_is_ignored_for_the_context(owner, caplog):
    """The hint names another appointment of the same environment, or one of another environment."""
    other = EnvironmentConfig(id="env2", kind="test", display_name="C", approved=True,
                              fhir_base_urls=("https://ehr.example.org/tst2/api/FHIR/R4",), epic_client_id="t2")
    world = World(others=(other,))
    world.appointments.create(Appointment(owner, "999999", "booked", NOW, NOW + timedelta(minutes=30), 30, None))
    callback, cookie = launch_to_callback(world, sessionId="999999")
    with caplog.at_level("WARNING"):
        world.service.complete(callback, cookie)
    assert world.appointments.get(f"env1|{CSN}").meeting is not None
    assert world.appointments.get(f"{owner}|999999").meeting is None
    assert "hint differs" in caplog.text and "999999" not in caplog.text


# ---- Epic encrypted link ------------------------------------------------------------------------------------
CAL_KEY = bytes(range(32))


def cal_world(**env: Any) -> World:
    world = signin_world(encrypted_keys={"env1": CAL_KEY}.get, used_links=UsedLinks())
    world.environments.configs["env1"] = dataclasses.replace(world.env, **{"launch_mode": "encrypted", **env})
    world.appointments.create(Appointment("env1", CSN, "booked", NOW, NOW + timedelta(minutes=30), 30, None))
    return world


def link(payload: str, key: bytes = CAL_KEY) -> str:
    return encrypt_link(key, payload, os.urandom(16))


def fresh(**fields: str) -> str:
    pairs = {"csn": CSN, "userId": "E1001", "userType": "provider", "timestamp": format_timestamp(NOW), **fields}
    return "&".join(f"{k}={v}" for k, v in pairs.items())


def test_an_encrypted_provider_link_goes_through_sign_in_to_the_meeting():
    world = cal_world()
    world.users.put(UserMapping("env1", "E1001", CLINICIAN_OID, NOW))  # type: ignore[attr-defined]
    result = world.service.begin("provider", {"env": "env1", "data": link(fresh())}, None)
    assert result.location == "https://teams.example.org/l/meetup-join/clin"
    assert result.cookies[0].name == "vv_launch"
    assert world.fake.calls[-1].url.endswith(f"/users/{CLINICIAN_OID}/onlineMeetings/createOrGet")
    assert [c for c in world.fake.calls if "oauth2" in c.url or "FHIR" in c.url] == []


def test_an_encrypted_patient_link_ends_on_the_join_page():
    world = cal_world()
    data = link(fresh(userId="", userType="patient"))
    result = world.service.begin("patient", {"env": "env1", "data": data}, None)
    assert result.location.startswith(f"{PUBLIC}/api/join/")


def test_an_encrypted_link_is_single_use():
    world = cal_world()
    world.users.put(UserMapping("env1", "E1001", CLINICIAN_OID, NOW))  # type: ignore[attr-defined]
    data = link(fresh())
    world.service.begin("provider", {"env": "env1", "data": data}, None)
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"env": "env1", "data": data}, None)
    assert err.value.code == "LAUNCH_EXPIRED"


def test_an_iv_altered_copy_of_a_used_link_is_a_replay():
    import base64

    world = cal_world()
    world.users.put(UserMapping("env1", "E1001", CLINICIAN_OID, NOW))  # type: ignore[attr-defined]
    data = link(fresh())
    world.service.begin("provider", {"env": "env1", "data": data}, None)
    raw = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    raw[4] ^= ord("0") ^ ord("1")  # turns a CSN digit of the first plaintext block into another
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"env": "env1", "data": forged}, None)
    assert err.value.code == "LAUNCH_EXPIRED"


@pytest.mark.parametrize("age", [timedelta(minutes=6), timedelta(hours=-1)])
def test_an_encrypted_link_with_a_stale_or_future_timestamp_is_refused(age):
    world = cal_world()
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"env": "env1", "data": link(fresh(timestamp=format_timestamp(NOW - age)))},
                            None)
    assert err.value.code == "LAUNCH_EXPIRED"


@pytest.mark.parametrize("data", [
    "not-base64!!",
    link(fresh(), key=bytes(32)),                   # another key
    link(fresh())[:-4] + "AAAA",                     # last block altered: padding / grammar fails
    link("csn=1&timestamp=2026"),                    # malformed timestamp
    link(fresh(csn="1;DROP")),                        # value outside the grammar
])
def test_an_unreadable_encrypted_link_gets_one_generic_code(data):
    world = cal_world()
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"env": "env1", "data": data}, None)
    assert err.value.code == "LAUNCH_LINK_INVALID"


def test_aes_128_and_configured_field_names_work():
    from lib.smart.encrypted_link import aes128_key_from_passphrase, decrypt_link

    key = aes128_key_from_passphrase("sixteen char key")
    payload = f"CSN={CSN}&EMP=E1001&TS={format_timestamp(NOW)}"
    decoded = decrypt_link(link(payload, key=key), key=key, now=NOW, max_age=timedelta(minutes=5),
                           fields={"csn": "CSN", "user_id": "EMP", "timestamp": "TS"})
    assert (decoded.csn, decoded.user_id) == (CSN, "E1001")


def test_a_patient_link_cannot_be_opened_as_a_provider_launch():
    world = cal_world()
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"env": "env1", "data": link(fresh(userId="", userType="patient"))}, None)
    assert err.value.code == "WRONG_LAUNCH_KIND"


def test_an_encrypted_link_to_a_smart_environment_is_refused():
    world = cal_world(launch_mode="smart")
    with pytest.raises(LaunchError) as err:
        world.service.begin("provider", {"env": "env1", "data": link(fresh())}, None)
    assert err.value.code == "LAUNCH_MODE_MISMATCH"
