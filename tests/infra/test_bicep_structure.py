"""The Bicep templates match the code: settings, Cosmos containers, queues, secrets, roles, hardening.

No Bicep compiler runs here (``az bicep build`` and a what-if run in .github/workflows/bicep.yml where
there is network). These tests read the templates' structure with ``tests/infra/bicep_text.py`` and the
code's facts from the code itself (``lib/settings.py`` through ``ast``, ``lib/store/schema.py``,
``lib/queues.py``, ``functions/*.py``). Each check is a function returning the problems it finds; each
is run once on the real templates (expecting none) and once on a small bad snippet (expecting the
problem), so a check that cannot fail is caught here too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import pytest

from lib.queues import poison_queue
from lib.store.schema import CONTAINERS
from tests.infra.bicep_text import BicepFile, Declaration, call_args, parse_array, parse_object, string_value

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MAIN = INFRA / "main.bicep"

# --- Allowlists: every entry says why; the tests fail when either side drifts. ---------------------

#: Settings the code reads that exist only on a developer machine and must NOT be in Bicep.
LOCAL_ONLY_SETTINGS: Mapping[str, str] = {
    "COSMOS_KEY": "account key; in Azure the identity reaches Cosmos (disableLocalAuth: true)",
    "COSMOS_EMULATOR": "turns TLS verification off for the local Cosmos-compatible server",
    "AzureWebJobsStorage": "Azurite connection string; in Azure the AzureWebJobsStorage__* identity settings",
    "ACS_CONNECTION_STRING": "endpoint + access key of the SMS stand-in; in Azure ACS_ENDPOINT + identity",
    "LOCAL_CA_BUNDLE": "CA of the local stand-ins' TLS certificates",
    "DEV_CLOCK_FILE": "file holding the test clock's 'now'",
    "SMART_PRIVATE_KEYS_FILE": "PEM file path; in Azure SMART_PRIVATE_KEYS holds the PEM (Key Vault reference)",
    "GRAPH_CLIENT_CERT_FILE": "PEM file path; in Azure GRAPH_CLIENT_CERT holds the PEM (Key Vault reference)",
    "SMART_PRIVATE_KEYS_PRODUCTION_FILE": "PEM file path; in Azure SMART_PRIVATE_KEYS_PRODUCTION (Key Vault reference)",
    "COSMOS_TRANSACTIONAL_BATCH": "0 only for a Cosmos-compatible server without transactional batches; Cosmos DB "
                                  "always runs them (default on)",
    "PORTAL_DEV_SIGNIN": "the portal's local sign-in form; refused by lib/settings.py outside the emulators",
}

#: Settings App Service itself sets on the running app (never in Bicep); lib/settings.py reads them.
PLATFORM_SETTINGS: Mapping[str, str] = {
    "WEBSITE_AUTH_ENABLED": "App Service authentication is on: only then is X-MS-CLIENT-PRINCIPAL trusted",
    "WEBSITE_AUTH_CLIENT_ID": "the Easy Auth app registration: the audience a principal must carry",
    "WEBSITE_INSTANCE_ID": "present on App Service: the local portal sign-in is refused there",
    "WEBSITE_SITE_NAME": "present on App Service: the local portal sign-in is refused there",
}

#: Settings Bicep provides that lib/settings.py does not read: the Functions host and the SDKs read them.
HOST_AND_SDK_SETTINGS: Mapping[str, str] = {
    "AzureWebJobsStorage__credential": "Functions host: identity-based host storage ('managedidentity')",
    "AzureWebJobsStorage__clientId": "Functions host: which user-assigned identity",
    "AzureWebJobsStorage__blobServiceUri": "Functions host: timer and singleton leases, package",
    "AZURE_CLIENT_ID": "azure-identity DefaultAzureCredential: selects the user-assigned identity",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "Functions host telemetry (not a secret, see NOT_SECRET)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Functions host: Entra-authenticated telemetry",
}

#: Settings that hold a PEM document from Key Vault; lib/settings.py reads them instead of the *_FILE ones.
KEY_VAULT_PEM_SETTINGS: Mapping[str, str] = {
    "SMART_PRIVATE_KEYS": "PEM of our SMART private_key_jwt signing key(s), first = active",
    "GRAPH_CLIENT_CERT": "PEM (private key + certificate) for the MSAL certificate credential",
    "GRAPH_CLIENT_CERT_PREVIOUS": "PEM of the Graph certificate being rotated out (optional): still decrypts "
                                  "notifications of subscriptions made with it",
    "SMART_PRIVATE_KEYS_PRODUCTION": "PEM of the signing key(s) of production environments, first = active",
}

#: The only ``@secure()`` parameters: secret values Bicep must see. Every other secret stays in Key Vault.
SECURE_PARAMS: Mapping[str, str] = {
    "eventGridWebhookKey": "Event Grid webhooks carry no signature: the subscriptions' endpointUrl must hold "
    "the key as ?code= (scripts/deploy.sh reads it from Key Vault and passes it)",
}

#: Settings whose names look secret but whose values are not.
NOT_SECRET: Mapping[str, str] = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "instrumentation key + ingestion URL; useless with local auth off",
}

# --- Facts from the code ------------------------------------------------------------------------


def settings_read(source: str) -> tuple[set[str], set[str]]:
    """``(every name, required names)`` that ``load_settings`` reads in ``source`` (lib/settings.py).

    Reads: ``env.get('X', ...)``, ``env['X']``, ``os.environ.get('X')``, ``os.getenv('X')`` and
    ``required('X')``; the last (and ``env['X']``) are required.

    Raises:
        AssertionError: a read whose name is not a string literal (this test could not see it).
    """
    tree = ast.parse(source)
    read: set[str] = set()
    required: set[str] = set()
    # The body of the ``required`` helper looks its argument up; its callers name the settings.
    helper_nodes = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "required"
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in helper_nodes:
            continue
        name_node: ast.expr | None = None
        is_required = False
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Name) and func.id == "required":
                name_node, is_required = node.args[0], True
            elif isinstance(func, ast.Attribute) and func.attr in {"get", "getenv"} and _is_env(func.value):
                name_node = node.args[0]
        elif isinstance(node, ast.Subscript) and _is_env(node.value):
            name_node, is_required = node.slice, True
        if name_node is None:
            continue
        assert isinstance(name_node, ast.Constant) and isinstance(name_node.value, str), (
            f"lib/settings.py line {node.lineno}: a setting name that is not a string literal; "
            "tests/infra cannot check it against Bicep"
        )
        read.add(name_node.value)
        if is_required:
            required.add(name_node.value)
    return read, required


def _is_env(node: ast.expr) -> bool:
    """``env``, ``environ``, ``os.environ`` or ``os`` (for ``os.getenv``)."""
    if isinstance(node, ast.Name):
        return node.id in {"env", "environ", "os"}
    return isinstance(node, ast.Attribute) and node.attr == "environ"


@cache
def code_settings() -> tuple[frozenset[str], frozenset[str]]:
    """The settings lib/settings.py reads, and those it requires."""
    read, required = settings_read((REPO / "lib" / "settings.py").read_text(encoding="utf-8"))
    return frozenset(read), frozenset(required)


def queues_used(queues_source: str, function_sources: Iterable[str]) -> set[str]:
    """Queue names: ``*_QUEUE = '...'`` constants in lib/queues.py and ``queue_name='...'`` in functions/.

    Raises:
        AssertionError: a trigger reads its queue name from a setting (``%NAME%``) or uses a storage
            connection other than ``AzureWebJobsStorage`` (Bicep would need more settings).
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(queues_source)):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.endswith("_QUEUE"):
                    names.add(node.value.value)
    for source in function_sources:
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "queue_name":
                    assert isinstance(kw.value, ast.Constant), "queue_name must be a literal for tests/infra"
                    assert not str(kw.value.value).startswith("%"), "queue name from a setting: add it to Bicep"
                    names.add(kw.value.value)
                if kw.arg == "connection":
                    assert isinstance(kw.value, ast.Constant) and kw.value.value == "AzureWebJobsStorage", (
                        "a trigger uses a connection other than AzureWebJobsStorage: Bicep must provide it"
                    )
    return names


@cache
def code_queues() -> frozenset[str]:
    """Every queue the code sends to or triggers on."""
    functions = [p.read_text(encoding="utf-8") for p in sorted((REPO / "functions").glob("*.py"))]
    functions.append((REPO / "function_app.py").read_text(encoding="utf-8"))
    return frozenset(queues_used((REPO / "lib" / "queues.py").read_text(encoding="utf-8"), functions))


# --- The templates --------------------------------------------------------------------------------


@cache
def bicep(relative: str) -> BicepFile:
    """A template under infra/, indexed."""
    return BicepFile.load(INFRA / relative)


@cache
def all_bicep() -> tuple[BicepFile, ...]:
    """Every .bicep file under infra/."""
    return tuple(BicepFile.load(p) for p in sorted(INFRA.rglob("*.bicep")))


def only(file: BicepFile, type_: str, *, existing: bool = False) -> Declaration:
    """The single (non-existing) resource of ``type_`` in ``file``."""
    found = [d for d in file.resources(type_) if d.existing == existing]
    assert len(found) == 1, f"{file.path}: expected one {type_}, found {len(found)}"
    return found[0]


def app_settings(main: BicepFile) -> dict[str, str]:
    """The Function App's settings: the ``sites/config`` resource named ``appsettings`` in main.bicep."""
    configs = [d for d in main.resources("Microsoft.Web/sites/config") if d.get("name") == "'appsettings'"]
    assert len(configs) == 1, "main.bicep must hold exactly one sites/config 'appsettings' resource"
    properties = configs[0].get("properties")
    assert properties is not None
    return parse_object(properties)


# --- Settings -------------------------------------------------------------------------------------


def settings_problems(read: Iterable[str], required: Iterable[str], provided: Iterable[str]) -> list[str]:
    """How the settings Bicep provides disagree with those the code reads."""
    read, required, provided = set(read), set(required), set(provided)
    local = set(LOCAL_ONLY_SETTINGS) | set(PLATFORM_SETTINGS)
    problems = [f"required by lib/settings.py but not provided by main.bicep: {n}" for n in sorted(required - provided)]
    problems += [
        f"read by lib/settings.py, neither in main.bicep nor in LOCAL_ONLY_SETTINGS: {n}"
        for n in sorted(read - provided - local)
    ]
    problems += [f"local-only setting provided by main.bicep: {n}" for n in sorted(provided & local)]
    problems += [f"required setting listed as local-only: {n}" for n in sorted(required & local)]
    problems += [
        f"provided by main.bicep but read by nothing (code, host or SDK): {n}"
        for n in sorted(provided - read - set(HOST_AND_SDK_SETTINGS))
    ]
    problems += [f"LOCAL_ONLY_SETTINGS lists a setting the code no longer reads: {n}" for n in sorted(local - read)]
    return problems


def test_the_settings_reader_sees_what_load_settings_reads():
    read, required = code_settings()
    assert {"COSMOS_ENDPOINT", "PUBLIC_BASE_URL", "LINK_SIGNING_KEY"} <= required
    assert "HL7_MAX_BYTES" in read and "HL7_MAX_BYTES" not in required
    # A lookup by a non-literal name would have failed code_settings() (see the next test).


def test_settings_reader_catches_new_and_non_literal_settings():
    read, required = settings_read("def f(env):\n    required('NEW_ONE')\n    env.get('OTHER', '1')\n    env['X']\n")
    assert read == {"NEW_ONE", "OTHER", "X"} and required == {"NEW_ONE", "X"}
    with pytest.raises(AssertionError, match="not a string literal"):
        settings_read("NAME = 'A'\ndef f(env):\n    env.get(NAME)\n")


def test_main_bicep_provides_exactly_the_settings_the_code_reads():
    read, required = code_settings()
    assert settings_problems(read, required, app_settings(bicep("main.bicep"))) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("add a required setting to the code", "required by lib/settings.py but not provided by main.bicep: NEW"),
        ("add an optional setting to the code", "neither in main.bicep nor in LOCAL_ONLY_SETTINGS: NEW"),
        ("put a local-only setting in Bicep", "local-only setting provided by main.bicep: COSMOS_KEY"),
        ("put an unread setting in Bicep", "provided by main.bicep but read by nothing (code, host or SDK): UNREAD"),
    ],
)
def test_settings_check_fails_when_either_side_drifts(change, expected):
    read, required = (set(s) for s in code_settings())
    provided = set(app_settings(bicep("main.bicep")))
    if change == "add a required setting to the code":
        read.add("NEW")
        required.add("NEW")
    elif change == "add an optional setting to the code":
        read.add("NEW")
    elif change == "put a local-only setting in Bicep":
        provided.add("COSMOS_KEY")
    else:
        provided.add("UNREAD")
    problems = settings_problems(read, required, provided)
    assert any(expected in p for p in problems), problems


def test_a_required_setting_added_to_the_real_settings_module_fails_the_check():
    source = (REPO / "lib" / "settings.py").read_text(encoding="utf-8")
    marker = 'cosmos_endpoint=required("COSMOS_ENDPOINT"),'
    assert marker in source
    mutated = source.replace(marker, marker + ' extra=required("EHR_API_SECRET"),')
    read, required = settings_read(mutated)
    problems = settings_problems(read, required, app_settings(bicep("main.bicep")))
    assert "required by lib/settings.py but not provided by main.bicep: EHR_API_SECRET" in problems


def test_pem_settings_are_read_by_the_code_and_are_key_vault_references():
    settings = app_settings(bicep("main.bicep"))
    read, _required = settings_read((REPO / "lib" / "settings.py").read_text(encoding="utf-8"))
    deploy_doc = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name in KEY_VAULT_PEM_SETTINGS:
        assert name in read, f"lib/settings.py does not read {name}"
        assert _is_key_vault_reference(settings[name]), name
        assert name in deploy_doc, f"docs/deploy.md must describe {name}"


# --- Secrets --------------------------------------------------------------------------------------

# KEY_VAULT_NAME / keyVaultName name a vault, not a key.
SECRET_NAME = re.compile(r"KEY(?!_?VAULT)|SECRET|PASSWORD|PASSWD|CERT|CONNECTION_?STRING|TOKEN", re.IGNORECASE)
# Functions and property names that read keys or connection strings out of a resource.
SECRET_SOURCE = re.compile(
    r"\blist\w*\s*\(|\.list\w*\(|primaryMasterKey|secondaryMasterKey|primaryKey|secondaryKey|"
    r"AccountKey=|accesskey=|SharedAccessSignature|SharedAccessKey|InstrumentationKey=|connectionStrings",
    re.IGNORECASE,
)
KEY_VAULT_REFERENCE = re.compile(
    r"^'@Microsoft\.KeyVault\((VaultName=\$\{[^}]+\};SecretName=\$\{?[\w.-]+\}?|SecretUri=[^)]+)\)'$"
)


def _is_key_vault_reference(value: str) -> bool:
    return bool(KEY_VAULT_REFERENCE.match(value.strip()))


def secret_setting_problems(settings: Mapping[str, str]) -> list[str]:
    """Settings whose name says secret but whose value is not a Key Vault reference; key-reading values."""
    problems = []
    for name, value in settings.items():
        if SECRET_NAME.search(name) and name not in NOT_SECRET and not _is_key_vault_reference(value):
            problems.append(f"{name} looks secret but is not a Key Vault reference")
        if "__credential" not in name and SECRET_SOURCE.search(value):
            problems.append(f"{name} reads a key or connection string: {value}")
    return problems


def secret_output_problems(file: BicepFile) -> list[str]:
    """Outputs that are secret by name or by value."""
    allowed = {"applicationInsightsConnectionString"}  # see NOT_SECRET
    problems = []
    for name, (_, value) in file.outputs.items():
        if SECRET_NAME.search(name) and name not in allowed:
            problems.append(f"{file.path.name if file.path else ''}: output {name} looks secret")
        if value and SECRET_SOURCE.search(value):
            problems.append(f"{file.path.name if file.path else ''}: output {name} reads a key: {value}")
    return problems


def test_no_secret_in_app_settings():
    assert secret_setting_problems(app_settings(bicep("main.bicep"))) == []
    settings = app_settings(bicep("main.bicep"))
    assert {n for n, v in settings.items() if _is_key_vault_reference(v)} == {
        "LINK_SIGNING_KEY",
        "LOG_ID_KEY",
        "SMART_PRIVATE_KEYS",
        "GRAPH_CLIENT_CERT",
        "GRAPH_CLIENT_CERT_PREVIOUS",
        "SMART_PRIVATE_KEYS_PRODUCTION",
        "EPIC_CAL_KEYS",
        "EVENTGRID_WEBHOOK_KEY",
    }


def test_secret_setting_check_catches_plain_values_and_keys():
    assert secret_setting_problems({"LINK_SIGNING_KEY": "'c2VjcmV0'"}) == [
        "LINK_SIGNING_KEY looks secret but is not a Key Vault reference"
    ]
    problems = secret_setting_problems({"COSMOS_ENDPOINT": "cosmos.listKeys().primaryMasterKey"})
    assert problems and "reads a key" in problems[0]
    assert secret_setting_problems(
        {"X_CONNECTION_STRING": "'DefaultEndpointsProtocol=https;AccountKey=${storage.listKeys().keys[0].value}'"}
    )


def test_no_output_is_a_secret():
    problems = [p for f in all_bicep() for p in secret_output_problems(f)]
    assert problems == []


def test_output_check_catches_a_key_output():
    bad = BicepFile("output storageKey string = storage.listKeys().keys[0].value\noutput ok string = 'x'\n")
    problems = secret_output_problems(bad)
    assert len(problems) == 2 and "storageKey" in problems[0]


# A ``param`` line with the decorators right above it (one per line; arguments may span lines).
_DECORATED_PARAM = re.compile(
    r"(?P<decorators>(?:^[ \t]*@\w+\((?:[^()']|'(?:[^'\\]|\\.)*')*\)[ \t]*\n)*)"
    r"^[ \t]*param\s+(?P<name>\w+)\s+(?P<type>\w+)",
    re.MULTILINE,
)


def secure_params(file: BicepFile) -> dict[str, str]:
    """``name -> type`` of the parameters declared with ``@secure()``."""
    return {
        m.group("name"): m.group("type")
        for m in _DECORATED_PARAM.finditer(file.text)
        if re.search(r"^[ \t]*@secure\(\)", m.group("decorators"), re.MULTILINE)
    }


def _references(expression: str, names: Iterable[str]) -> set[str]:
    return {n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}\b", expression)}


def secure_output_problems(file: BicepFile) -> list[str]:
    """Outputs that reference a ``@secure()`` parameter, directly or through variables."""
    tainted = set(secure_params(file))
    changed = True
    while changed:  # variables computed from a secure parameter are secret too
        changed = False
        for name, value in file.variables.items():
            if name not in tainted and _references(value, tainted):
                tainted.add(name)
                changed = True
    where = file.path.name if file.path else ""
    return [
        f"{where}: output {name} references {', '.join(sorted(_references(value or '', tainted)))}"
        for name, (_, value) in file.outputs.items()
        if _references(value or "", tainted)
    ]


def secure_param_problems(file: BicepFile) -> list[str]:
    """``@secure()`` parameters not in SECURE_PARAMS, and SECURE_PARAMS declared without ``@secure()``."""
    where = file.path.name if file.path else ""
    secure = secure_params(file)
    problems = [
        f"{where}: secure parameter {n} is not in SECURE_PARAMS" for n in sorted(set(secure) - set(SECURE_PARAMS))
    ]
    problems += [
        f"{where}: parameter {n} must be @secure()" for n in sorted(set(SECURE_PARAMS) & set(file.params) - set(secure))
    ]
    return problems + secure_output_problems(file)


def test_no_template_reads_keys_or_takes_other_secure_parameters():
    for file in all_bicep():
        assert not SECRET_SOURCE.search(file.text), f"{file.path}: reads a key or connection string"
        # Bicep sees one secret value, the webhook key; every other secret reaches the app from Key Vault.
        assert secure_param_problems(file) == [], file.path
    assert set(secure_params(bicep("main.bicep"))) == set(SECURE_PARAMS)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("param eventGridWebhookKey string = ''\n", "parameter eventGridWebhookKey must be @secure()"),
        ("@secure()\nparam adminPassword string\n", "secure parameter adminPassword is not in SECURE_PARAMS"),
        (
            "@description('the key (a \\'code\\')')\n@secure()\nparam eventGridWebhookKey string\n"
            "output url string = 'https://x/api/events/acs?code=${eventGridWebhookKey}'\n",
            "output url references eventGridWebhookKey",
        ),
        (
            "@secure()\nparam eventGridWebhookKey string\nvar url = '${base}?code=${eventGridWebhookKey}'\n"
            "var again = toLower(url)\noutput hook string = again\n",
            "output hook references again",
        ),
    ],
)
def test_secure_parameter_check_catches_plain_unlisted_and_output_keys(snippet, expected):
    problems = secure_param_problems(BicepFile(snippet))
    assert any(expected in p for p in problems), problems


def test_secure_parameter_reader_sees_decorators_only_on_their_own_parameter():
    text = "@secure()\n@description('k')\nparam a string\nparam b string\n@minLength(1)\nparam c string\n"
    assert secure_params(BicepFile(text)) == {"a": "string"}


# --- Cosmos DB ------------------------------------------------------------------------------------


def bicep_containers(file: BicepFile) -> dict[str, tuple[str, int | None]]:
    """``name -> (partition key, default TTL)`` from ``var cosmosContainers`` in app/cosmos.bicep."""
    result: dict[str, tuple[str, int | None]] = {}
    for item in parse_array(file.variables["cosmosContainers"]):
        entry = parse_object(item)
        name, key = string_value(entry["name"]), string_value(entry["partitionKey"])
        assert name and key, item
        ttl = entry.get("defaultTtl")
        result[name] = (key, int(ttl) if ttl is not None else None)
    return result


def container_problems(file: BicepFile) -> list[str]:
    """Containers in ``file`` that differ from lib/store/schema.py, or a container resource that
    does not use the list's partition key and TTL."""
    expected = {c.name: (c.partition_key, c.default_ttl) for c in CONTAINERS}
    actual = bicep_containers(file)
    problems = [
        f"container {n}: code has {expected.get(n)}, Bicep has {actual.get(n)}"
        for n in sorted(set(expected) | set(actual))
        if expected.get(n) != actual.get(n)
    ]
    loops = file.resources("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")
    if len(loops) != 1 or loops[0].loop != "for c in cosmosContainers":
        return [*problems, "containers are not one loop over cosmosContainers"]
    resource = loops[0].get("properties.resource") or ""
    compact = re.sub(r"\s+", "", resource)
    for needed in ("id:c.name", "paths:[c.partitionKey]", "contains(c,'defaultTtl')?{defaultTtl:c.defaultTtl}:{}"):
        if needed not in compact:
            problems.append(f"container resource does not map {needed}")
    if loops[0].get("name") != "c.name":
        problems.append("container resource name is not c.name")
    return problems


def test_every_cosmos_container_exists_with_its_partition_key_and_ttl():
    assert container_problems(bicep("app/cosmos.bicep")) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "{ name: 'visits', partitionKey: '/appointmentKey', defaultTtl: -1 }",
            "{ name: 'visits', partitionKey: '/id', defaultTtl: -1 }",
            "container visits",
        ),
        (
            "{ name: 'visits', partitionKey: '/appointmentKey', defaultTtl: -1 }",
            "{ name: 'visits', partitionKey: '/appointmentKey' }",
            "container visits",
        ),
        ("  { name: 'timer_state', partitionKey: '/id' }\n", "", "container timer_state"),
        ("paths: [c.partitionKey]", "paths: ['/id']", "does not map paths"),
    ],
)
def test_container_check_catches_a_wrong_key_ttl_or_missing_container(old, new, expected):
    text = (INFRA / "app" / "cosmos.bicep").read_text(encoding="utf-8")
    assert old in text
    problems = container_problems(BicepFile(text.replace(old, new)))
    assert any(expected in p for p in problems), problems


def test_cosmos_is_serverless_without_keys():
    account = only(bicep("app/cosmos.bicep"), "Microsoft.DocumentDB/databaseAccounts")
    assert account.get("properties.disableLocalAuth") == "true"
    capabilities = [parse_object(c) for c in parse_array(account.get("properties.capabilities") or "[]")]
    assert {"name": "'EnableServerless'"} in capabilities
    assert account.get("properties.minimalTlsVersion") == "'Tls12'"


def test_cosmos_database_name_is_the_setting():
    main = bicep("main.bicep")
    cosmos = main.symbol("cosmos")
    assert cosmos is not None
    assert parse_object(cosmos.get("params") or "{}")["databaseName"] == "cosmosDatabaseName"
    assert app_settings(main)["COSMOS_DATABASE"] == "cosmos.outputs.databaseName"


# --- Queues ---------------------------------------------------------------------------------------


def queue_problems(main: BicepFile, storage: BicepFile, used: Iterable[str]) -> list[str]:
    """Queues the code uses (and their poison queues) that main.bicep does not create, and extras."""
    expected = set()
    for name in used:
        # Every trigger raises for a malformed message, so even a poison queue's trigger has a poison queue.
        expected |= {name, poison_queue(name)}
    actual = {string_value(v) for v in parse_array(main.variables["queueNames"])}
    problems = [f"queue {q} used by the code is not created" for q in sorted(expected - actual)]
    problems += [
        f"queue {q} is created but the code does not use it" for q in sorted(q for q in actual - expected if q)
    ]
    module = main.symbol("storage")
    if module is None or parse_object(module.get("params") or "{}").get("queueNames") != "queueNames":
        problems.append("main.bicep does not pass queueNames to the storage module")
    loops = storage.resources("Microsoft.Storage/storageAccounts/queueServices/queues")
    if len(loops) != 1 or loops[0].loop != "for queueName in queueNames" or loops[0].get("name") != "queueName":
        problems.append("storage.bicep does not create one queue per queueNames entry")
    return problems


def test_the_queue_reader_finds_the_contracts_queues():
    assert {"sms-outbox", "visit-events"} <= code_queues()


def test_every_queue_and_its_poison_queue_exists():
    assert queue_problems(bicep("main.bicep"), bicep("app/storage.bicep"), code_queues()) == []


def test_queue_check_catches_a_missing_poison_queue_and_a_new_queue():
    text = MAIN.read_text(encoding="utf-8").replace("  'visit-events-poison'\n", "")
    problems = queue_problems(BicepFile(text), bicep("app/storage.bicep"), code_queues())
    assert problems == ["queue visit-events-poison used by the code is not created"]
    problems = queue_problems(bicep("main.bicep"), bicep("app/storage.bicep"), {*code_queues(), "reports"})
    assert "queue reports used by the code is not created" in problems


def test_queue_reader_sees_trigger_names_and_rejects_other_connections():
    source = "@bp.queue_trigger(arg_name='m', queue_name='q1', connection='AzureWebJobsStorage')\ndef f(m): ..."
    assert queues_used("A_QUEUE = 'q0'\n", [source]) == {"q0", "q1"}
    with pytest.raises(AssertionError, match="connection other than"):
        queues_used("", ["@bp.queue_trigger(arg_name='m', queue_name='q', connection='Other')\ndef f(m): ..."])
    with pytest.raises(AssertionError, match="from a setting"):
        queues_used(
            "", ["@bp.queue_trigger(arg_name='m', queue_name='%Q%', connection='AzureWebJobsStorage')\ndef f(m): ..."]
        )


# --- Role assignments -----------------------------------------------------------------------------

#: Built-in roles the app's identity may hold, with the one resource type each may be scoped to.
ALLOWED_APP_ROLES: Mapping[str, tuple[str, str]] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": ("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts"),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": ("Storage Queue Data Contributor", "Microsoft.Storage/storageAccounts"),
    "4633458b-17de-408a-b874-0445c86b69e6": ("Key Vault Secrets User", "Microsoft.KeyVault/vaults"),
    "3913510d-42f4-4e42-8a64-420c390055eb": ("Monitoring Metrics Publisher", "Microsoft.Insights/components"),
    # No narrower built-in role can send SMS with Entra ID (see the comment in app/rbac.bicep).
    "09976791-48a7-449e-bb21-39d1a415f350": (
        "Communication and Email Service Owner",
        "Microsoft.Communication/communicationServices",
    ),
}
#: The one grant to a person: the operator may write secrets into the vault (conditional, optional).
OPERATOR_ROLE = ("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "Microsoft.KeyVault/vaults", "operatorPrincipalId")
#: Broad roles that must appear nowhere (Owner, Contributor, User Access Administrator, Storage Account
#: Contributor, Key Vault Administrator, DocumentDB Account Contributor, Cosmos DB Operator).
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "5bd9cd88-fe45-4216-938b-f97437e15450",
    "230815da-be43-4aae-9cb4-875f7bd000aa",
}
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _role_guid(file: BicepFile, expr: str) -> str | None:
    """The role GUID behind ``subscriptionResourceId('...roleDefinitions', x)`` (``x`` a literal or var)."""
    args = call_args(expr, "subscriptionResourceId")
    if not args or args[0] != "'Microsoft.Authorization/roleDefinitions'" or len(args) != 2:
        return None
    literal = string_value(args[1]) or string_value(file.variables.get(args[1], ""))
    return literal if literal and GUID.match(literal) else None


def role_assignment_problems(file: BicepFile) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Problems with the role assignments in ``file``, and the grants ``(principal, role, scope type)``."""
    problems: list[str] = []
    grants: list[tuple[str, str, str]] = []
    for ra in file.resources("Microsoft.Authorization/roleAssignments"):
        where = f"{file.path.name if file.path else 'snippet'}:{ra.symbol}"
        scope_symbol = ra.get("scope") or ""
        scope = file.symbol(scope_symbol)
        principal = ra.get("properties.principalId") or ""
        role = _role_guid(file, ra.get("properties.roleDefinitionId") or "")
        if scope is None or scope.kind != "resource":
            problems.append(f"{where}: not scoped to one resource of this file")
            continue
        if role is None:
            problems.append(f"{where}: roleDefinitionId is not a built-in role GUID")
            continue
        name_args = call_args(ra.get("name") or "", "guid") or []
        role_expr = call_args(ra.get("properties.roleDefinitionId") or "", "subscriptionResourceId") or ["", ""]
        if name_args != [f"{scope_symbol}.id", principal, role_expr[1]]:
            problems.append(f"{where}: name is not guid({scope_symbol}.id, {principal}, <role>)")
        if principal == "principalId":
            allowed = ALLOWED_APP_ROLES.get(role)
            if allowed is None or allowed[1].lower() != scope.target.lower():
                problems.append(f"{where}: role {role} on {scope.target} is not an allowed least-privilege grant")
            if ra.get("properties.principalType") != "'ServicePrincipal'":
                problems.append(f"{where}: principalType is not 'ServicePrincipal'")
        elif principal == OPERATOR_ROLE[2]:
            if (role, scope.target) != OPERATOR_ROLE[:2] or ra.condition != f"!empty({OPERATOR_ROLE[2]})":
                problems.append(f"{where}: the operator may only get Key Vault Secrets Officer, conditionally")
        else:
            problems.append(f"{where}: principal {principal} is neither the app identity nor the operator")
        grants.append((principal, role, scope.target))
    for guid_ in FORBIDDEN_ROLES:
        if guid_ in file.text:
            problems.append(f"{file.path.name if file.path else 'snippet'}: broad role {guid_} appears")
    return problems, grants


def test_every_role_assignment_is_least_privilege_to_the_identity():
    problems: list[str] = []
    grants: set[tuple[str, str, str]] = set()
    for file in all_bicep():
        found, granted = role_assignment_problems(file)
        problems += found
        grants |= set(granted)
    assert problems == []
    app_grants = {(role, scope) for principal, role, scope in grants if principal == "principalId"}
    assert app_grants == {(role, scope) for role, (_, scope) in ALLOWED_APP_ROLES.items()}


def test_the_rbac_principal_is_the_user_assigned_identity():
    main = bicep("main.bicep")
    identity = only(main, "Microsoft.ManagedIdentity/userAssignedIdentities")
    modules_with_grants = [m for m in main.modules() if "roleAssignments" in BicepFile.load(INFRA / m.target).text]
    assert [m.symbol for m in modules_with_grants] == ["rbac"]
    params = parse_object(modules_with_grants[0].get("params") or "{}")
    assert params["principalId"] == f"{identity.symbol}.properties.principalId"
    assert params["operatorPrincipalId"] == "operatorPrincipalId"
    assert main.params["operatorPrincipalId"][1] == "''", "the operator grant must be opt-in"
    site = only(bicep("app/functionapp.bicep"), "Microsoft.Web/sites")
    assert site.get("identity.type") == "'UserAssigned'"
    assert parse_object(main.symbol("functionApp").get("params") or "{}")["identityId"] == "identity.id"


_GOOD_ASSIGNMENT = """
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: 'kv'
}
var secretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
resource ra 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, secretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (None, None, None),
        ("'4633458b-17de-408a-b874-0445c86b69e6'", "'b24988ac-6180-42a0-ab88-20f7382dd24c'", "not an allowed"),
        ("'4633458b-17de-408a-b874-0445c86b69e6'", "'974c5e8b-45b9-4653-ba55-5f855dd0fb88'", "not an allowed"),
        ("principalId: principalId", "principalId: someoneElse", "neither the app identity"),
        ("name: guid(vault.id, principalId, secretsUser)", "name: 'fixed'", "name is not guid"),
        ("name: guid(vault.id, principalId, secretsUser)", "name: guid(principalId, secretsUser)", "name is not guid"),
        ("principalType: 'ServicePrincipal'", "principalType: 'User'", "principalType"),
        ("scope: vault", "scope: resourceGroup()", "not scoped to one resource"),
    ],
)
def test_role_check_catches_broad_roles_wrong_principals_and_names(old, new, expected):
    text = _GOOD_ASSIGNMENT if old is None else _GOOD_ASSIGNMENT.replace(old, new)
    problems, _ = role_assignment_problems(BicepFile(text))
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


def test_cosmos_data_plane_role_is_data_contributor_on_the_account():
    rbac = bicep("app/rbac.bicep")
    assignments = rbac.resources("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")
    assert len(assignments) == 1
    ra = assignments[0]
    account = rbac.symbol(ra.get("parent") or "")
    assert account is not None and account.target == "Microsoft.DocumentDB/databaseAccounts"
    assert rbac.variables["cosmosDataContributorRoleId"] == f"'{COSMOS_DATA_CONTRIBUTOR}'"
    assert (
        ra.get("properties.roleDefinitionId")
        == f"'${{{account.symbol}.id}}/sqlRoleDefinitions/${{cosmosDataContributorRoleId}}'"
    )
    assert ra.get("properties.principalId") == "principalId"
    assert ra.get("properties.scope") == f"{account.symbol}.id"
    assert call_args(ra.get("name") or "", "guid") == [
        f"{account.symbol}.id",
        "principalId",
        "cosmosDataContributorRoleId",
    ]


# --- Hardening ------------------------------------------------------------------------------------

HARDENING: list[tuple[str, str, str, str]] = [
    ("app/storage.bicep", "Microsoft.Storage/storageAccounts", "properties.allowSharedKeyAccess", "false"),
    ("app/storage.bicep", "Microsoft.Storage/storageAccounts", "properties.allowBlobPublicAccess", "false"),
    ("app/storage.bicep", "Microsoft.Storage/storageAccounts", "properties.minimumTlsVersion", "'TLS1_2'"),
    ("app/storage.bicep", "Microsoft.Storage/storageAccounts", "properties.supportsHttpsTrafficOnly", "true"),
    ("app/cosmos.bicep", "Microsoft.DocumentDB/databaseAccounts", "properties.disableLocalAuth", "true"),
    ("app/keyvault.bicep", "Microsoft.KeyVault/vaults", "properties.enableRbacAuthorization", "true"),
    ("app/keyvault.bicep", "Microsoft.KeyVault/vaults", "properties.enablePurgeProtection", "true"),
    ("app/keyvault.bicep", "Microsoft.KeyVault/vaults", "properties.enableSoftDelete", "true"),
    ("app/monitoring.bicep", "Microsoft.Insights/components", "properties.DisableLocalAuth", "true"),
    ("app/communication.bicep", "Microsoft.Communication/communicationServices", "properties.disableLocalAuth", "true"),
    (
        "app/communication.bicep",
        "Microsoft.Communication/communicationServices",
        "properties.dataLocation",
        "dataLocation",
    ),
    ("app/functionapp.bicep", "Microsoft.Web/serverfarms", "sku.name", "'FC1'"),
    ("app/functionapp.bicep", "Microsoft.Web/serverfarms", "sku.tier", "'FlexConsumption'"),
    ("app/functionapp.bicep", "Microsoft.Web/serverfarms", "properties.reserved", "true"),
    ("app/functionapp.bicep", "Microsoft.Web/sites", "kind", "'functionapp,linux'"),
    ("app/functionapp.bicep", "Microsoft.Web/sites", "properties.httpsOnly", "true"),
    ("app/functionapp.bicep", "Microsoft.Web/sites", "properties.siteConfig.minTlsVersion", "'1.2'"),
    ("app/functionapp.bicep", "Microsoft.Web/sites", "properties.siteConfig.ftpsState", "'Disabled'"),
    ("app/functionapp.bicep", "Microsoft.Web/sites", "properties.keyVaultReferenceIdentity", "identityId"),
    ("app/functionapp.bicep", "Microsoft.Web/sites", "properties.functionAppConfig.runtime.name", "'python'"),
    ("app/functionapp.bicep", "Microsoft.Web/sites", "properties.functionAppConfig.runtime.version", "'3.11'"),
    (
        "app/functionapp.bicep",
        "Microsoft.Web/sites",
        "properties.functionAppConfig.deployment.storage.authentication.type",
        "'UserAssignedIdentity'",
    ),
]


def hardening_problems(files: Mapping[str, BicepFile]) -> list[str]:
    """Each HARDENING property that does not hold its expected value."""
    problems = []
    for relative, type_, path, expected in HARDENING:
        actual = only(files[relative], type_).get(path)
        if actual != expected:
            problems.append(f"{relative} {type_} {path} = {actual!r}, expected {expected!r}")
    return problems


def test_resources_are_hardened():
    files = {relative: bicep(relative) for relative, *_ in HARDENING}
    assert hardening_problems(files) == []


@pytest.mark.parametrize(
    ("relative", "old", "new"),
    [
        ("app/storage.bicep", "allowSharedKeyAccess: false", "allowSharedKeyAccess: true"),
        ("app/cosmos.bicep", "    disableLocalAuth: true\n", ""),
        ("app/keyvault.bicep", "enablePurgeProtection: true", "enablePurgeProtection: false"),
        ("app/functionapp.bicep", "version: '3.11'", "version: '3.12'"),
        ("app/functionapp.bicep", "name: 'python'", "name: 'dotnet-isolated'"),
        ("app/functionapp.bicep", "ftpsState: 'Disabled'", "ftpsState: 'AllAllowed'"),
    ],
)
def test_hardening_check_catches_a_weakened_resource(relative, old, new):
    text = (INFRA / relative).read_text(encoding="utf-8")
    assert old in text
    files = {r: bicep(r) for r, *_ in HARDENING}
    files[relative] = BicepFile(text.replace(old, new))
    assert len(hardening_problems(files)) == 1


def test_basic_auth_publishing_is_off():
    policies = bicep("app/functionapp.bicep").resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {(p.get("name"), p.get("properties.allow")) for p in policies} == {("'ftp'", "false"), ("'scm'", "false")}


def test_app_settings_are_identity_based():
    settings = app_settings(bicep("main.bicep"))
    assert settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert settings["AzureWebJobsStorage__clientId"] == "identity.properties.clientId"
    assert settings["AZURE_CLIENT_ID"] == "identity.properties.clientId"
    assert settings["AzureWebJobsStorage__queueServiceUri"] == "storage.outputs.queueEndpoint"
    assert settings["AzureWebJobsStorage__blobServiceUri"] == "storage.outputs.blobEndpoint"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "'ClientId=${identity.properties.clientId};Authorization=AAD'"
    )
    # Flex Consumption rejects these; the runtime comes from functionAppConfig.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "WEBSITE_RUN_FROM_PACKAGE", "AzureWebJobsStorage"} & set(settings)


# --- Event Grid -----------------------------------------------------------------------------------


def test_event_grid_sends_sms_events_to_the_webhook():
    comm = bicep("app/communication.bicep")
    topic = only(comm, "Microsoft.EventGrid/systemTopics")
    assert topic.get("properties.source") == "acs.id"
    assert topic.get("properties.topicType") == "'Microsoft.Communication.CommunicationServices'"
    subscriptions = only(comm, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    assert subscriptions.get("parent") == topic.symbol
    assert subscriptions.loop == (
        "for sub in (enableEventSubscriptions && !empty(eventGridWebhookKey) ? smsEventSubscriptions : [])"
    )
    types = {string_value(parse_object(s)["eventType"]) for s in parse_array(comm.variables["smsEventSubscriptions"])}
    assert types == {"Microsoft.Communication.SMSDeliveryReportReceived", "Microsoft.Communication.SMSReceived"}
    assert subscriptions.get("properties.filter.includedEventTypes") == "[\n          sub.eventType\n        ]"
    assert subscriptions.get("properties.destination.endpointType") == "'WebHook'"
    # SMS events carry phone numbers: no dead-letter copy outliving the visit.
    assert subscriptions.get("properties.deadLetterDestination") is None
    params = parse_object(bicep("main.bicep").symbol("communication").get("params") or "{}")
    assert params["webhookUrl"] == "'${appBaseUrl}/api/events/acs'"
    assert params["dataLocation"] == "acsDataLocation"


def webhook_key_problems(main: BicepFile, comm: BicepFile) -> list[str]:
    """The subscriptions' endpointUrl does not carry ``?code=`` from the secure webhook key parameter,
    the key is not passed down from main.bicep, or the subscriptions can deploy with an empty key."""
    problems = []
    for file in (main, comm):
        if secure_params(file).get("eventGridWebhookKey") != "string":
            problems.append(f"{file.path.name if file.path else ''}: eventGridWebhookKey is not a @secure() string")
    module = main.symbol("communication")
    if parse_object(module.get("params") or "{}").get("eventGridWebhookKey") != "eventGridWebhookKey":
        problems.append("main.bicep does not pass eventGridWebhookKey to app/communication.bicep")
    for sub in comm.resources("Microsoft.EventGrid/systemTopics/eventSubscriptions"):
        url = sub.get("properties.destination.properties.endpointUrl")
        if url != "'${webhookUrl}?code=${eventGridWebhookKey}'":
            problems.append(f"endpointUrl does not carry ?code=${{eventGridWebhookKey}}: {url}")
        if "!empty(eventGridWebhookKey)" not in (sub.loop or "") + (sub.condition or ""):
            problems.append("the subscriptions can deploy with an empty key")
    return problems


def test_the_webhook_subscriptions_carry_the_secure_key_as_code():
    main, comm = bicep("main.bicep"), bicep("app/communication.bicep")
    assert webhook_key_problems(main, comm) == []
    # The app checks the same secret: the Key Vault secret deploy.sh creates and reads back.
    assert main.variables["eventGridWebhookKeySecretName"] == "'eventgrid-webhook-key'"
    deploy = (REPO / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    assert "WEBHOOK_KEY_SECRET=eventgrid-webhook-key" in deploy


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "app/communication.bicep",
            "@secure()\n@description('The webhook",
            "@description('The webhook",
            "communication.bicep: eventGridWebhookKey is not a @secure() string",
        ),
        (
            "main.bicep",
            "@secure()\n@description('Value",
            "@description('Value",
            "main.bicep: eventGridWebhookKey is not",
        ),
        ("main.bicep", "    eventGridWebhookKey: eventGridWebhookKey\n", "", "does not pass eventGridWebhookKey"),
        (
            "app/communication.bicep",
            "endpointUrl: '${webhookUrl}?code=${eventGridWebhookKey}'",
            "endpointUrl: webhookUrl",
            "endpointUrl does not carry ?code=",
        ),
        (
            "app/communication.bicep",
            "enableEventSubscriptions && !empty(eventGridWebhookKey) ?",
            "enableEventSubscriptions ?",
            "can deploy with an empty key",
        ),
    ],
)
def test_webhook_key_check_catches_a_plain_parameter_a_bare_url_or_no_guard(file, old, new, expected):
    texts = {name: (INFRA / name).read_text(encoding="utf-8") for name in ("main.bicep", "app/communication.bicep")}
    assert old in texts[file]
    texts[file] = texts[file].replace(old, new)
    main = BicepFile(texts["main.bicep"], INFRA / "main.bicep")
    comm = BicepFile(texts["app/communication.bicep"], INFRA / "app" / "communication.bicep")
    problems = webhook_key_problems(main, comm)
    assert any(expected in p for p in problems), problems


# --- Location, tags, names ------------------------------------------------------------------------


def test_every_regional_resource_uses_the_location_parameter_and_tags():
    for file in all_bicep():
        for d in file.resources():
            location = d.fields.get("location")
            if d.existing or location is None:
                continue
            assert location in {"location", "'global'"}, f"{file.path}:{d.symbol} location {location}"
            assert d.fields.get("tags") == "tags", f"{file.path}:{d.symbol} has no tags"
    main = bicep("main.bicep")
    for module in main.modules():
        params = parse_object(module.get("params") or "{}")
        declared = BicepFile.load(INFRA / module.target).params
        for shared in ("location", "tags"):
            if shared in declared:
                assert params.get(shared) == shared, f"module {module.symbol} does not get {shared}"


def test_resource_names_come_from_the_resource_token():
    main = bicep("main.bicep")
    assert main.variables["resourceToken"] == (
        "toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))"
    )
    child_names = {"databaseName", "deploymentContainerName"}  # unique under a uniquely named parent
    checked = 0
    for module in main.modules():
        for key, value in parse_object(module.get("params") or "{}").items():
            if (key == "name" or key.endswith("Name")) and key not in child_names and value in main.variables:
                assert "${resourceToken}" in main.variables[value], f"{module.symbol}.{key} = {value}"
                checked += 1
    assert checked >= 9
    # Storage and Key Vault names have length limits: prefix + 13 characters of uniqueString.
    assert len("st") + 13 <= 24 and len("kv-") + 13 <= 24
    assert main.variables["storageAccountName"] == "'st${resourceToken}'"
    assert main.variables["keyVaultName"] == "'kv-${resourceToken}'"


# --- Parameter files ------------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["test", "production"])
def test_parameter_file_sets_what_main_needs(environment):
    path = INFRA / f"main.{environment}.bicepparam"
    params_file = BicepFile.load(path)
    assert re.search(r"^using 'main\.bicep'$", params_file.text, re.MULTILINE)
    set_here = params_file.params
    declared = bicep("main.bicep").params
    assert {"location", "acsDataLocation", "environmentName", "tags"} <= set(set_here)
    assert set(set_here) <= set(declared), f"unknown parameters: {set(set_here) - set(declared)}"
    without_default = {name for name, (_, default) in declared.items() if default is None}
    assert without_default <= set(set_here)
    assert set_here["environmentName"][1] == f"'{environment}'"
    tags = parse_object(set_here["tags"][1] or "{}")
    assert tags.get("environment") == f"'{environment}'"


# --- Optional: a full parser ----------------------------------------------------------------------


def test_pycep_parses_every_template_when_installed():
    pycep = pytest.importorskip("pycep", reason="pycep-parser not installed (the CI workflow installs it)")
    parser = pycep.BicepParser()
    for path in sorted(INFRA.rglob("*.bicep")):
        tree = parser.parse(text=path.read_text(encoding="utf-8"))
        assert tree.get("resources") or tree.get("modules"), path


def test_app_service_authentication_signs_portal_users_in_and_leaves_the_other_routes_anonymous():
    auth = only(bicep("app/functionapp.bicep"), "Microsoft.Web/sites/config")
    assert auth.get("name") == "'authsettingsV2'"
    assert auth.get("properties.platform.enabled") == "true"
    assert auth.get("properties.globalValidation.requireAuthentication") == "false"
    assert auth.get("properties.globalValidation.unauthenticatedClientAction") == "'AllowAnonymous'"
    assert auth.get("properties.identityProviders.azureActiveDirectory.registration.clientId") == "portalClientId"
    main = bicep("main.bicep")
    app = main.symbol("functionApp")
    assert app is not None
    assert parse_object(app.get("params") or "{}")["portalClientId"] == "portalClientId"
