"""The main job, end to end on one machine: ``./dev demo`` (``python -m local.demo``).

Starts the demo services and the dev runner, then walks one video visit through every stage over real
HTTP and the real Azure SDKs, printing what came in, what was stored, which text was sent, where the
browser was redirected and what was written back. Time is moved with the dev runner's ``DEV_CLOCK_FILE``.

The same steps back the end-to-end test (``tests/e2e/test_demo_scenario.py``), which asserts on the
returned :class:`DemoResult`.
"""

from __future__ import annotations

import argparse
import html.parser
import os
import random
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import requests

from lib.models import appointment_key
from lib.store.contacts import phone_id
from local import seed, services
from local.siu_builder import siu

ROOT = Path(__file__).resolve().parents[1]
#: A fictional number (555-0100..0199) drawn per run: repeated demos against services that stay up would
#: otherwise reach the product's per-number cap (6 texts in 72 hours) and the confirmation would be skipped.
_LINE = f"01{secrets.randbelow(100):02d}"
PATIENT_PHONE = f"(201)555-{_LINE}"
PATIENT_E164 = f"+1201555{_LINE}"


@dataclass
class DemoResult:
    """What the scenario observed, for the end-to-end test to assert on."""

    csn: str = ""
    ack_codes: list[str] = field(default_factory=list)
    stored_appointment: dict[str, Any] = field(default_factory=dict)
    contact_ttl: int | None = None
    texts: list[dict[str, Any]] = field(default_factory=list)
    provider_redirects: list[list[str]] = field(default_factory=list)
    join_url: str = ""
    patient_page_status: int = 0
    patient_page_has_meeting: bool = False
    writebacks: list[dict[str, Any]] = field(default_factory=list)
    texts_after_cancel_timer: int = 0


def mask(phone: str) -> str:
    """A phone number with its last four digits hidden (the trace never prints a whole number)."""
    return phone[:-4] + "****" if len(phone) > 4 else "****"


class Trace:
    """Numbered, readable output."""

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self._out = out

    def step(self, number: int, title: str) -> None:
        self._out(f"\n== {number}. {title}")

    def say(self, text: str) -> None:
        self._out(f"   {text}")


class _Form(html.parser.HTMLParser):
    """Finds the first form of an auto-submitting page (SMART authorize POST)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
        elif tag == "input" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")


def follow(session: requests.Session, url: str, *, verify: str, stop_host: str | None = None) -> list[str]:
    """Follow redirects (and auto-submitted forms) like a browser; returns every URL visited.

    Stops at a 200 page without a form, or on reaching a meeting (``/l/meetup-join/``) on ``stop_host``.
    """
    visited = [url]
    method, data = "GET", None
    for _ in range(12):
        response = session.request(method, url, data=data, allow_redirects=False, verify=verify, timeout=30)
        if response.status_code in (301, 302, 303, 307):
            url = urljoin(url, response.headers["Location"])
            method, data = "GET", None
            visited.append(url)
            # The meeting's host also serves the Microsoft 365 sign-in (Entra stand-in): stop at the meeting.
            if stop_host and urlsplit(url).netloc == stop_host and "/l/meetup-join/" in urlsplit(url).path:
                return visited
            continue
        form = _Form()
        form.feed(response.text)
        if response.status_code == 200 and form.action:
            url, method, data = urljoin(url, form.action), "POST", form.fields
            visited.append(url)
            continue
        if response.status_code != 200:
            raise RuntimeError(f"{urlsplit(url).path} answered HTTP {response.status_code}: {response.text[:300]}")
        return visited
    raise RuntimeError("too many redirects")


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class Demo:
    """One run of the scenario against running services and a running dev runner."""

    def __init__(self, settings: dict[str, str], clock_file: Path, runner_url: str, trace: Trace) -> None:
        self.settings = settings
        self.clock_file = clock_file
        self.runner = runner_url
        self.trace = trace
        self.verify = settings["LOCAL_CA_BUNDLE"]
        self.epic = settings["EPIC_STANDIN_URL"]
        self.acs = settings["ACS_STANDIN_URL"]
        self.environment_id = seed.DEMO_ENVIRONMENT_ID
        self.zone = ZoneInfo(seed.DEMO_TIME_ZONE)
        self.result = DemoResult()
        self._app: Any = None

    # --- helpers -----------------------------------------------------------------------------------
    @property
    def app(self) -> Any:
        if self._app is None:
            from functions.dependencies import Services

            self._app = Services(dict(self.settings))
        return self._app

    def set_clock(self, at: datetime | None) -> None:
        self.clock_file.write_text(at.isoformat() if at else "")

    def texts(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.acs}/_standin/messages", verify=self.verify, timeout=10)
        response.raise_for_status()
        mine = f"{self.environment_id}|{self.result.csn}|"  # the outbox ID travels as the ACS tag
        return [m for m in response.json() if m["successful"] and (m.get("tag") or "").startswith(mine)]

    def wait_for(self, what: Callable[[], Any], description: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = what()
            if value:
                return value
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {description}")

    def post_hl7(self, message: bytes) -> str:
        from local.hl7_send import signed_headers
        from local.tls import ensure_local_material

        key_pem, _cert = ensure_local_material().read_hl7_sender()  # the demo hospital's interface engine
        response = requests.post(
            f"{self.runner}/api/hl7/{self.environment_id}",
            data=message,
            headers=signed_headers(message, key_pem=key_pem, environment_id=self.environment_id),
            timeout=30,
        )
        ack = response.content.decode()
        msa = next(seg for seg in ack.split("\r") if seg.startswith("MSA"))
        self.trace.say(f"HTTP {response.status_code}, ACK {msa}")
        code = msa.split("|")[1]
        self.result.ack_codes.append(code)
        return code

    def run_timer(self) -> None:
        response = requests.post(f"{self.runner}/admin/functions/reminders_due", json={"input": ""}, timeout=30)
        response.raise_for_status()

    def show_new_texts(self, before: int) -> list[dict[str, Any]]:
        texts = self.texts()
        for text in texts[before:]:
            self.trace.say(f"SMS to {mask(text['to'])}: {text['message']}")
        return texts

    # --- the scenario ---------------------------------------------------------------------------------
    def run(self) -> DemoResult:
        now = datetime.now(UTC).replace(microsecond=0)
        local_start = (now + timedelta(days=2)).astimezone(self.zone).replace(hour=15, minute=0, second=0)
        start = local_start.astimezone(UTC)
        csn = str(random.randint(7_000_000, 7_999_999))  # an ID, not a secret
        self.result.csn = csn
        self.set_clock(now)

        self.trace.step(1, f"Epic sends SIU^S12 for CSN {csn} (visit {local_start:%a %b %d %H:%M %Z})")
        self.post_hl7(siu("S12", csn=csn, start=start, control_id=f"{csn}-1", sent=now, phone=PATIENT_PHONE))
        stored = self.app.repos.appointments.get(appointment_key(self.environment_id, csn))
        doc = stored.to_doc()
        self.result.stored_appointment = doc
        self.trace.say(
            "stored appointment: "
            + ", ".join(f"{k}={doc[k]}" for k in ("id", "status", "start_utc", "duration_minutes", "department",
                                                  "provider_ehr_id", "schedule_revision"))
        )
        contact = self.app.store.container("visits").read_item(item=phone_id(stored.key), partition_key=stored.key)
        self.result.contact_ttl = contact.get("ttl")
        self.trace.say(
            f"stored phone apart: {mask(contact['phone_e164'])}, delete_after={contact['delete_after']}, "
            f"ttl={contact['ttl']} s"
        )

        self.trace.step(2, "The confirmation text goes out through azure-communication-sms")
        self.wait_for(lambda: len(self.texts()) >= 1, "the confirmation text")
        texts = self.show_new_texts(0)

        self.trace.step(3, "The clock moves to one minute after the 24-hour reminder is due; the timer runs twice")
        self.set_clock(start - timedelta(hours=24) + timedelta(minutes=1))
        self.run_timer()
        self.wait_for(lambda: len(self.texts()) >= 2, "the reminder text")
        self.run_timer()
        time.sleep(0.5)
        texts = self.show_new_texts(len(texts))
        self.trace.say(f"texts so far: {len(texts)} (the second timer run sent nothing)")

        self.trace.step(4, "The clinician clicks Begin virtual visit in Epic (SMART EHR launch)")
        for attempt in (1, 2):
            launch = requests.post(
                f"{self.epic}/_standin/launch",
                json={"client_id": seed.DEMO_CLIENT_ID, "appointment_csn": csn, "user_id": seed.DEMO_PROVIDER,
                      "context": "provider"},
                verify=self.verify, timeout=10,
            ).json()
            session = requests.Session()
            url = (f"{self.runner}/api/launch/provider?iss={launch['iss']}&launch={launch['launch']}"
                   f"&sessionId={csn}&departmentId=IM")
            hops = follow(session, url, verify=self.verify,
                          stop_host=urlsplit(self.settings["GRAPH_STANDIN_URL"]).netloc)
            self.result.provider_redirects.append(hops)
            self.trace.say(f"launch {attempt}: " + " -> ".join(_path(h) for h in hops))
        self.result.join_url = self.result.provider_redirects[-1][-1]
        same = self.result.provider_redirects[0][-1] == self.result.provider_redirects[1][-1]
        self.trace.say(f"both launches reach the same Teams meeting: {same}")

        self.trace.step(5, "The patient opens the link from the text ten minutes before the visit")
        self.set_clock(start - timedelta(minutes=10))
        match = re.search(r"https?://\S+/api/join/[A-Za-z0-9_-]+", texts[0]["message"])
        assert match, "the confirmation text has no join link"
        page = requests.get(match.group(0), timeout=30)
        self.result.patient_page_status = page.status_code
        json_headers = {"Content-Type": "application/json"}
        requests.post(match.group(0) + "/events", json={"type": "page_opened", "attempt": "demo-page-1"}, timeout=30)
        steps = dict.fromkeys(("speaker", "microphone", "camera", "connection", "test_call"), "passed")
        tested = requests.post(match.group(0) + "/events", timeout=30, headers=json_headers,
                               json={"type": "device_test", "attempt": "demo-page-1", "steps": steps})
        self.trace.say(f"GET {_path(match.group(0))[:60]}... -> HTTP {page.status_code}; device test (all passed): "
                       f"POST .../events -> HTTP {tested.status_code}")
        call = requests.post(match.group(0) + "/call", json={}, timeout=30)
        self.result.patient_page_has_meeting = call.ok and call.json().get("meetingLink") == self.result.join_url
        self.trace.say(f"patient joins: POST .../call -> HTTP {call.status_code} (an ACS identity and token); "
                       f"the page joins the same meeting: {self.result.patient_page_has_meeting}")

        self.trace.step(6, "The meeting's roster changes in Teams; Graph notifies us; presence goes to Epic")
        self._script_roster(csn, start)
        # Five write-backs: the patient's device test, and from the roster the clinician and the patient each
        # connected and disconnected (the launches and the page are clicks, not presence).
        writebacks = self.wait_for(lambda: self._writebacks(at_least=5), "five write-backs")
        time.sleep(1.0)
        self.result.writebacks = self._writebacks()
        for call in self.result.writebacks:
            shown = ("ConferenceID", "ExternalID", "ExternalIDType", "VendorName", "ConnectionStatus", "auth")
            self.trace.say("SetExternalConnectionStatus " + ", ".join(f"{k}={call.get(k)}" for k in shown))
        self.trace.say(f"write-backs: {len(self.result.writebacks)} (one per event; a second later still "
                       f"{len(writebacks)})")

        self.trace.step(7, "Epic sends SIU^S15: the visit is cancelled")
        self.set_clock(start - timedelta(hours=20))
        before = len(self.texts())
        self.post_hl7(siu("S15", csn=csn, start=start, control_id=f"{csn}-2",
                          sent=start - timedelta(hours=20), phone=PATIENT_PHONE))
        self.wait_for(lambda: len(self.texts()) > before, "the cancellation text")
        texts = self.show_new_texts(before)
        self.set_clock(start - timedelta(minutes=59))
        self.run_timer()
        time.sleep(1.0)
        self.result.texts_after_cancel_timer = len(self.texts()) - len(texts)
        self.trace.say(f"the 1-hour reminder time passes: {self.result.texts_after_cancel_timer} more texts")
        self.result.texts = self.texts()
        self.set_clock(None)
        return self.result

    def _script_roster(self, csn: str, start: datetime) -> None:
        """Play the meeting in the Graph stand-in: the clinician (signed in once: EHR user -> Entra object ID)
        joins, the patient (the ACS identity the join page issued) waits in the lobby, is admitted, both leave."""
        from lib.store.graph_subscriptions import subscription_doc_id
        from lib.store.users import UserMapping

        key = f"{self.environment_id}|{csn}"
        appointment = self.app.repos.appointments.get(key)
        # The launch subscribed to the meeting's call events after its redirect (launch-followup queue): a roster
        # played before that is not notified (the call record would settle it later, docs/presence.md).
        subscriptions = self.app.presence_subscriptions._repo
        self.wait_for(lambda: getattr(subscriptions.get(subscription_doc_id(key)), "state", None) == "active",
                      "the meeting's call-events subscription")
        self.app.users.put(UserMapping(self.environment_id, seed.DEMO_PROVIDER, seed.DEMO_ORGANIZER,
                                       datetime.now(UTC)))
        patient = "8:acs:demo-patient-" + csn
        self.app.participant_identities.register(patient, key, "patient", expires=start + timedelta(days=1),
                                                 now=datetime.now(UTC))
        clinician, pat = {"user": seed.DEMO_ORGANIZER}, {"acs": patient}
        steps = [{"action": "start"}, {"action": "join", "participant": clinician},
                 {"action": "join", "participant": pat, "lobby": True}, {"action": "admit", "participant": pat},
                 {"action": "leave", "participant": pat}, {"action": "leave", "participant": clinician},
                 {"action": "end"}]
        answer = requests.post(f"{self.settings['GRAPH_STANDIN_URL']}/_standin/call-events",
                               json={"joinWebUrl": appointment.meeting.join_url, "steps": steps},
                               verify=self.verify, timeout=60)
        answer.raise_for_status()
        statuses = [d.get("status") for d in answer.json()["deliveries"]]
        self.trace.say(f"roster: start, clinician joins, patient in lobby, admitted, patient leaves, clinician "
                       f"leaves, end -> {len(statuses)} encrypted notifications, answered {sorted(set(statuses))}")

    def _writebacks(self, at_least: int = 0) -> list[dict[str, Any]]:
        """The stand-in's recorded ``SetExternalConnectionStatus`` calls for this visit (empty if fewer
        than ``at_least``)."""
        response = requests.get(f"{self.epic}/_standin/connection-status", verify=self.verify, timeout=10)
        response.raise_for_status()
        calls = [c for c in response.json() if c.get("ConferenceID") == self.result.csn]
        return calls if len(calls) >= at_least else []


def start_runner(settings: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start the dev runner (no automatic timers: the demo runs them on demand) and wait until it serves.

    Refuses when the port is taken: the demo would otherwise talk to that other runner and its settings.
    """
    if not services.port_free(port):
        raise RuntimeError(
            f"port {port} is already in use (a './dev runner' or another demo?): stop it, or run with "
            "another LOCAL_PORT_OFFSET"
        )
    env = {**os.environ, **settings}
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "local.devrunner", "--port", str(port), "--no-timers", "--settings", "/dev/null"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the dev runner exited; see {log_path}")
        try:
            requests.get(f"http://127.0.0.1:{port}/admin/host/status", timeout=2)
            return process
        except requests.ConnectionError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"the dev runner did not start in time; see {log_path}")


def run_demo(
    profile: str = "demo",
    out: Callable[[str], None] = print,
    after: Callable[[dict[str, int]], None] | None = None,
    scenario: str = "visit",
) -> Any:
    """Start everything for ``profile``, run the scenario, stop what was started.

    ``scenario`` ``visit`` (default: :class:`Demo`, returns :class:`DemoResult`) or ``portal`` (the set-up path
    in the configuration portal: :class:`local.demo_portal.PortalDemo`, returns its summary dict).
    ``after`` is called before anything stops with the process IDs by name (services and ``devrunner``),
    for the benchmark to read their peak memory.
    """
    trace = Trace(out)
    handle = services.start(profile, ROOT)
    runner: subprocess.Popen[bytes] | None = None
    try:
        settings = services.settings_for(profile, ROOT)
        run_dir = services.run_dir(profile, ROOT)
        run_dir.mkdir(parents=True, exist_ok=True)
        clock_file = run_dir / "clock.txt"
        clock_file.write_text("")
        settings = {**settings, "DEV_CLOCK_FILE": str(clock_file)}
        seed.seed(settings)
        port = int(urlsplit(settings["PUBLIC_BASE_URL"]).port or 7071)
        runner = start_runner(settings, port, run_dir / "devrunner.log")
        trace.say(f"services ({profile}) and dev runner on {settings['PUBLIC_BASE_URL']} are up")
        demo = Demo(settings, clock_file, settings["PUBLIC_BASE_URL"], trace)
        if scenario == "portal":
            from local.demo_portal import PortalDemo

            return PortalDemo(settings, settings["PUBLIC_BASE_URL"], trace, demo.app).run()
        result = demo.run()
        if after is not None:
            after({**handle.pids, "devrunner": runner.pid})
        return result
    finally:
        if runner is not None:
            runner.terminate()
            runner.wait(timeout=10)
        handle.stop()


def main() -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=["demo", "test"])
    parser.add_argument("--portal", action="store_true",
                        help="show the set-up path in the configuration portal instead (docs/portal.md)")
    args = parser.parse_args()
    try:
        if args.portal:
            summary = run_demo(args.profile, scenario="portal")
            print(f"\nDone: environment {summary['environment']} approved, {len(summary['records'])} integration "
                  "records, a launch reached the meeting")
            return 0
        result = run_demo(args.profile)
    except (RuntimeError, services.ServiceError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # run_demo's finally has stopped what it started
        print("\ndemo: interrupted; the services and runner it started are stopped", file=sys.stderr)
        return 130
    print(f"\nDone: {len(result.texts)} texts, {len(result.writebacks)} write-backs, meeting {result.join_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
