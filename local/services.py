"""Start, stop and inspect the local services (dev/test only) on loopback.

Services per profile (ports from ``docs/contracts.md``):

=========  ====================================================  ===========================  ===========
name       what                                                  demo ports                   test ports
=========  ====================================================  ===========================  ===========
azurite    Azurite blob/queue/table (in memory)                  10000/10001/10002            10100-10102
cosmos     ``@vercel/cosmosdb-server`` (TLS, expired cert)       8081                         8181
epic       Epic stand-in (``local.standins.epic``)               9401                         9501
graph      Entra + Graph stand-in (``local.standins.graph``)     9402                         9502
acs        ACS SMS stand-in (``local.standins.acs_sms``)         9403                         9503
=========  ====================================================  ===========================  ===========

CLI::

    python -m local.services start  --profile demo|test [--timeout SECONDS]
    python -m local.services stop   --profile demo|test
    python -m local.services status --profile demo|test
    python -m local.services env    --profile demo|test     # KEY=VALUE lines for our app (local values)

PIDs and logs go to ``.local/run/<profile>/<name>.pid|.log``. Processes run in their own session (process
group) and are stopped by that recorded id only. A busy port, a missing Node.js or a missing
``node_modules`` ends the CLI with one line on stderr and exit code 2.

Python API: :func:`start`, :func:`stop`, :func:`status`, :func:`settings_for`.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from local.standins.graph import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID
from local.tls import REPO_ROOT, LocalMaterial, ensure_local_material

__all__ = [
    "COSMOS_EMULATOR_KEY",
    "PROFILES",
    "SERVICE_NAMES",
    "Profile",
    "ServiceError",
    "ServiceHandle",
    "main",
    "settings_for",
    "start",
    "status",
    "stop",
]

COSMOS_EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
COSMOS_DATABASE = "virtualvisits"
HOST = "127.0.0.1"
SERVICE_NAMES = ("azurite", "cosmos", "epic", "graph", "acs")


@dataclass(frozen=True)
class Profile:
    """Loopback ports of one profile."""

    name: str
    runner: int
    blob: int
    queue: int
    table: int
    cosmos: int
    epic: int
    graph: int
    acs: int


PROFILES: dict[str, Profile] = {
    "demo": Profile("demo", 7071, 10000, 10001, 10002, 8081, 9401, 9402, 9403),
    "test": Profile("test", 7171, 10100, 10101, 10102, 8181, 9501, 9502, 9503),
}


class ServiceError(Exception):
    """A start/stop problem with a one-line, actionable message (the CLI prints it, exit code 2)."""


@dataclass
class ServiceHandle:
    """What :func:`start` brought up.

    Attributes:
        profile: the profile.
        root: repository root.
        material: local key material paths.
        settings: :func:`settings_for` of the profile.
        pids: service name -> process id (for every running service of the profile).
        started: names started by this call (others were already running and are left alone by ``stop``).
    """

    profile: Profile
    root: Path
    material: LocalMaterial
    settings: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    def stop(self) -> list[str]:
        """Stop the services this handle started; returns their names."""
        return stop(self.profile.name, self.root, only=self.started)

    def url(self, name: str) -> str:
        """Base URL of a stand-in (``epic``, ``graph``, ``acs``)."""
        return f"https://{HOST}:{getattr(self.profile, name)}"


def _profile(name: str) -> Profile:
    """The profile's ports, each shifted by ``LOCAL_PORT_OFFSET`` (default 0) so that two checkouts, or a
    checkout and a CI run, can run their services side by side."""
    try:
        base = PROFILES[name]
    except KeyError:
        raise ServiceError(f"unknown profile {name!r}: use one of {', '.join(PROFILES)}") from None
    try:
        offset = int(os.environ.get("LOCAL_PORT_OFFSET", "0"))
    except ValueError:
        raise ServiceError("LOCAL_PORT_OFFSET must be a whole number (e.g. 1000)") from None
    if not offset:
        return base
    ports = {f.name: getattr(base, f.name) + offset for f in dataclasses.fields(base) if f.name != "name"}
    if max(ports.values()) > 65535 or min(ports.values()) < 1024:
        raise ServiceError("LOCAL_PORT_OFFSET moves a port outside 1024..65535")
    return Profile(name, **ports)


def _run_dir(root: Path, profile: Profile) -> Path:
    """Where a profile's PIDs and logs live; a port offset gets its own folder (its processes differ)."""
    offset = profile.runner - PROFILES[profile.name].runner
    return root / ".local" / "run" / (f"{profile.name}+{offset}" if offset else profile.name)


def run_dir(profile: str, root: Path | None = None) -> Path:
    """The folder holding ``profile``'s PIDs and logs (the demo keeps its clock file and runner log there)."""
    return _run_dir(root or REPO_ROOT, _profile(profile))


def settings_for(profile: str, root: Path | None = None) -> dict[str, str]:
    """The settings (``docs/contracts.md``) our app needs to use ``profile``'s services.

    Creates the local key material if missing (it does not start anything). Paths are absolute.
    Besides the contract settings, it adds ``REQUESTS_CA_BUNDLE`` (local CA + certifi, for MSAL/requests),
    ``EPIC_STANDIN_URL``, ``EPIC_STANDIN_ISS``, ``GRAPH_STANDIN_URL`` and ``ACS_STANDIN_URL`` for tests.
    """
    p = _profile(profile)
    root = (root or REPO_ROOT).resolve()
    m = ensure_local_material(root)
    storage = ";".join([
        "DefaultEndpointsProtocol=http",
        f"AccountName={AZURITE_ACCOUNT}",
        f"AccountKey={AZURITE_KEY}",
        f"BlobEndpoint=http://{HOST}:{p.blob}/{AZURITE_ACCOUNT}",
        f"QueueEndpoint=http://{HOST}:{p.queue}/{AZURITE_ACCOUNT}",
        f"TableEndpoint=http://{HOST}:{p.table}/{AZURITE_ACCOUNT}",
    ]) + ";"
    return {
        "COSMOS_ENDPOINT": f"https://{HOST}:{p.cosmos}/",
        "COSMOS_KEY": COSMOS_EMULATOR_KEY,
        "COSMOS_DATABASE": COSMOS_DATABASE,
        "COSMOS_EMULATOR": "1",
        # The single-threaded local Cosmos-compatible server can take seconds per call on a loaded machine; the
        # production budget (5 s, lib/store/cosmos.py) is tested on its own (test_intake_store_faults.py).
        "COSMOS_READ_TIMEOUT_SECONDS": "60",
        "AzureWebJobsStorage": storage,
        "ACS_CONNECTION_STRING": f"endpoint=https://{HOST}:{p.acs}/;accesskey={m.read_acs_key()}",
        "PUBLIC_BASE_URL": f"http://{HOST}:{p.runner}",
        "LINK_SIGNING_KEY": m.read_link_key(),
        "SMART_PRIVATE_KEYS_FILE": str(m.smart_key),
        "GRAPH_TENANT_ID": DEFAULT_TENANT_ID,
        "GRAPH_CLIENT_ID": DEFAULT_CLIENT_ID,
        "GRAPH_CLIENT_CERT_FILE": str(m.graph_pem),
        "GRAPH_AUTHORITY_HOST": f"https://{HOST}:{p.graph}",
        "GRAPH_BASE_URL": f"https://{HOST}:{p.graph}/v1.0",
        "LOCAL_CA_BUNDLE": str(m.ca_cert),
        "REQUESTS_CA_BUNDLE": str(m.ca_bundle),
        "EPIC_STANDIN_URL": f"https://{HOST}:{p.epic}",
        "EPIC_STANDIN_ISS": f"https://{HOST}:{p.epic}/api/FHIR/R4",
        "GRAPH_STANDIN_URL": f"https://{HOST}:{p.graph}",
        "ACS_STANDIN_URL": f"https://{HOST}:{p.acs}",
        # The portal's local sign-in form (lib.settings allows it only against these emulators).
        "PORTAL_DEV_SIGNIN": "1",
    }


# ---- process specs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    name: str
    ports: tuple[int, ...]
    argv: list[str]
    marker: str  # substring of /proc/<pid>/cmdline identifying our process
    probe: Callable[[], bool]


def _http_probe(url: str, context: ssl.SSLContext | None, want_ok: bool) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310 - loopback URL
            return resp.status == 200 or not want_ok
    except urllib.error.HTTPError:
        return not want_ok  # any HTTP answer means the server is up
    except (OSError, ssl.SSLError):
        return False


def _specs(p: Profile, root: Path, m: LocalMaterial) -> list[_Spec]:
    bin_dir = root / "node_modules" / ".bin"
    verified = ssl.create_default_context(cafile=str(m.ca_cert))
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    py = sys.executable

    def standin(name: str, module: str, port: int, extra: list[str]) -> _Spec:
        return _Spec(name, (port,), [py, "-m", f"local.standins.{module}", "--port", str(port),
                                     "--host", HOST, "--tls-dir", str(m.tls_dir), *extra],
                     f"local.standins.{module}",
                     lambda: _http_probe(f"https://{HOST}:{port}/_standin/health", verified, True))

    return [
        _Spec("azurite", (p.blob, p.queue, p.table), [
            str(bin_dir / "azurite"), "--silent", "--skipApiVersionCheck", "--disableTelemetry",
            "--inMemoryPersistence",
            "--blobHost", HOST, "--queueHost", HOST, "--tableHost", HOST,
            "--blobPort", str(p.blob), "--queuePort", str(p.queue), "--tablePort", str(p.table),
        ], "azurite", lambda: all(
            _http_probe(f"http://{HOST}:{port}/{AZURITE_ACCOUNT}?comp=list", None, False)
            for port in (p.blob, p.queue, p.table))),
        # Through local/cosmosdb_server.js: the package's server with its missing-document 500 fixed to 404.
        _Spec("cosmos", (p.cosmos,),
              [shutil.which("node") or "node", str(Path(__file__).with_name("cosmosdb_server.js")),
               "-p", str(p.cosmos), "--host", HOST],
              "cosmosdb_server.js", lambda: _http_probe(f"https://{HOST}:{p.cosmos}/", unverified, False)),
        standin("epic", "epic", p.epic, ["--emp-password-file", str(m.epic_emp_password)]),
        standin("graph", "graph", p.graph, ["--tenant", DEFAULT_TENANT_ID]),
        standin("acs", "acs_sms", p.acs, ["--access-key-file", str(m.acs_key)]),
    ]


# ---- pid files -------------------------------------------------------------------------------------
def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive_with_marker(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if marker not in cmdline:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _running_pid(run: Path, spec: _Spec) -> int | None:
    pid = _read_pid(run / f"{spec.name}.pid")
    if pid is not None and _alive_with_marker(pid, spec.marker):
        return pid
    return None


def port_free(port: int) -> bool:
    """True when nothing listens on the loopback ``port`` (a new server could bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((HOST, port)) != 0


def _check_node(root: Path) -> None:
    if shutil.which("node") is None:
        raise ServiceError("Node.js is not installed: install Node 20+ (apt-get install nodejs npm), "
                           f"then run `npm ci` in {root}")
    for tool in ("azurite", "cosmosdb-server"):
        if not (root / "node_modules" / ".bin" / tool).exists():
            raise ServiceError(f"node_modules/.bin/{tool} is missing: run `npm ci` in {root}")


def _terminate(pid: int, marker: str, grace: float = 5.0) -> None:
    """SIGTERM the process group we created for ``pid`` (its own session), then SIGKILL after ``grace``."""
    if not _alive_with_marker(pid, marker):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap when it is our child
        except ChildProcessError:
            pass
        if not _alive_with_marker(pid, marker):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---- public API ------------------------------------------------------------------------------------
def start(profile: str = "test", root: Path | None = None, *, timeout: float = 60.0,
          only: Iterable[str] | None = None) -> ServiceHandle:
    """Start the profile's services (those not already running) and wait until each answers.

    Args:
        profile: ``demo`` or ``test``.
        root: repository root (holds ``node_modules`` and ``.local``).
        timeout: seconds to wait for readiness (TCP, then an HTTP probe) of all services.
        only: subset of :data:`SERVICE_NAMES` (default: all).

    Returns:
        ServiceHandle; ``handle.stop()`` stops only what this call started.

    Raises:
        ServiceError: Node.js or node_modules missing, a port busy with another process, a service that
            exits or does not become ready in time (services started by this call are stopped again).
    """
    p = _profile(profile)
    root = (root or REPO_ROOT).resolve()
    names = list(only or SERVICE_NAMES)
    unknown = [n for n in names if n not in SERVICE_NAMES]
    if unknown:
        raise ServiceError(f"unknown service {unknown[0]!r}: use {', '.join(SERVICE_NAMES)}")
    if {"azurite", "cosmos"} & set(names):
        _check_node(root)
    m = ensure_local_material(root)
    run = _run_dir(root, p)
    run.mkdir(parents=True, exist_ok=True)
    handle = ServiceHandle(p, root, m, settings_for(profile, root))
    specs = [s for s in _specs(p, root, m) if s.name in names]
    to_start: list[_Spec] = []
    other = "test" if p.name == "demo" else "demo"
    for spec in specs:
        pid = _running_pid(run, spec)
        if pid is not None:
            handle.pids[spec.name] = pid
            continue
        for port in spec.ports:
            if not port_free(port):
                raise ServiceError(f"port {port} ({spec.name}) is in use by another process: "
                                   f"stop it or run with --profile {other}")
        to_start.append(spec)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for spec in to_start:
            log = open(run / f"{spec.name}.log", "ab")  # noqa: SIM115 - handed to the child
            try:
                proc = subprocess.Popen(spec.argv, cwd=root, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env=_child_env())
            finally:
                log.close()
            procs[spec.name] = proc
            handle.pids[spec.name] = proc.pid
            handle.started.append(spec.name)
            (run / f"{spec.name}.pid").write_text(f"{proc.pid}\n")
        _wait_ready(list(to_start), procs, run, timeout)
        if "graph" in handle.started:
            _register_graph_app(handle)
    except BaseException:
        stop(p.name, root, only=handle.started)
        raise
    return handle


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NODE_OPTIONS", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _wait_ready(specs: list[_Spec], procs: dict[str, subprocess.Popen[bytes]], run: Path,
                timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(specs)
    while pending:
        for spec in list(pending):
            code = procs[spec.name].poll()
            if code is not None:
                raise ServiceError(f"{spec.name} exited during start-up (exit code {code}): "
                                   f"see {run / (spec.name + '.log')}")
            if all(not port_free(port) for port in spec.ports) and spec.probe():
                pending.remove(spec)
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise ServiceError(f"{names} not ready after {timeout:.0f}s: see the logs in {run}")
        time.sleep(0.2)


def _register_graph_app(handle: ServiceHandle) -> None:
    """Register our app (GRAPH_CLIENT_ID + graph.pem certificate) with the Graph/Entra stand-in."""
    pem = handle.material.graph_pem.read_text()
    cert = pem[pem.index("-----BEGIN CERTIFICATE-----"):]
    body = json.dumps({"client_id": DEFAULT_CLIENT_ID, "certificate_pem": cert, "redirect_uris": [],
                       "roles": ["OnlineMeetings.ReadWrite.All", "CallRecords.Read.All",
                                 "OnlineMeetingArtifact.Read.All"]}).encode()
    req = urllib.request.Request(  # noqa: S310 - loopback https URL
        f"{handle.url('graph')}/_standin/apps", data=body, method="POST",
        headers={"Content-Type": "application/json"})
    ctx = ssl.create_default_context(cafile=str(handle.material.ca_cert))
    with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:  # noqa: S310 - loopback URL
        resp.read()


def stop(profile: str = "test", root: Path | None = None, only: Iterable[str] | None = None) -> list[str]:
    """Stop the profile's services recorded in ``.local/run/<profile>``; returns the names stopped.

    Only processes whose recorded PID still runs our command line are signalled (never a recycled PID).
    """
    p = _profile(profile)
    root = (root or REPO_ROOT).resolve()
    run = _run_dir(root, p)
    names = set(only if only is not None else SERVICE_NAMES)
    stopped = []
    for spec in _specs(p, root, ensure_local_material(root)):
        if spec.name not in names:
            continue
        pid_file = run / f"{spec.name}.pid"
        pid = _read_pid(pid_file)
        if pid is None:
            continue
        if _alive_with_marker(pid, spec.marker):
            _terminate(pid, spec.marker)
            stopped.append(spec.name)
        pid_file.unlink(missing_ok=True)
    return stopped


def status(profile: str = "test", root: Path | None = None) -> dict[str, str]:
    """Per service: ``running (pid N)``, ``stopped`` or ``port N busy (another process)``."""
    p = _profile(profile)
    root = (root or REPO_ROOT).resolve()
    run = _run_dir(root, p)
    out = {}
    for spec in _specs(p, root, ensure_local_material(root)):
        pid = _running_pid(run, spec)
        if pid is not None:
            out[spec.name] = f"running (pid {pid}, port {'/'.join(map(str, spec.ports))})"
            continue
        busy = [port for port in spec.ports if not port_free(port)]
        out[spec.name] = f"port {busy[0]} busy (another process)" if busy else "stopped"
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI (see module docstring). Exit codes: 0 ok, 2 actionable error (one line on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m local.services")
    parser.add_argument("command", choices=("start", "stop", "status", "env"))
    parser.add_argument("--profile", choices=tuple(PROFILES), default="demo")
    parser.add_argument("--timeout", type=float, default=60.0, help="readiness timeout in seconds (start)")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            handle = start(args.profile, timeout=args.timeout)
            for name in SERVICE_NAMES:
                state = "started" if name in handle.started else "already running"
                print(f"{name}: {state} (pid {handle.pids[name]})")
            print(f"logs: {_run_dir(handle.root, handle.profile)}")
        elif args.command == "stop":
            stopped = stop(args.profile)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.command == "status":
            for name, state in status(args.profile).items():
                print(f"{name}: {state}")
        else:
            for key, value in settings_for(args.profile).items():
                print(f"{key}={shlex.quote(value)}")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
