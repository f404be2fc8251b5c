"""No PHI in any log record or exception text: the whole demo scenario and the bad-input cases.

Runs (1) the end-to-end demo scenario (``local.demo.run_demo("test")``: the dev runner as a subprocess,
its log file ``.local/run/test/devrunner.log`` read afterwards, plus the in-process parts under
``caplog``) and (2) bad inputs posted in-process (every HL7 fixture sample, broken and unsigned messages,
an ACK, bad launches and join links). Then it looks for every phone number (formatted, E.164, digits),
HL7 segment text, bearer token, JWT, OAuth code, join-link token and patient name that went in, in
every record's message and exception text and in the dev runner's log. The redaction is not told any
name: this proves the generic rules (and that the code does not log PHI in the first place).
"""

from __future__ import annotations

import hashlib
import logging
import re

import azure.functions as func
import pytest

from local import demo
from local.siu_builder import siu
from tests.conftest import ROOT, SAMPLES
from tests.support.calls import post_hl7
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

DEMO_PHONE = demo.PATIENT_PHONE
DEMO_PHONES = [DEMO_PHONE, demo.PATIENT_E164, demo.PATIENT_E164[2:], demo.PATIENT_PHONE[5:]]
DEMO_NAMES = ["PATIENT^DEMO", "CLINICIAN^DEMO"]
DEMO_SEGMENTS = ["MSH|^~\\&|SCHED", "PID|1||Z999001", "Z999001", "1 MAIN ST", "SCH||", "PV1||O", "AIP|1||"]
GENERIC = [
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}"),  # a JWT (id_token, access token, client assertion)
    re.compile(r"(?i)\bbearer\s+(?!\[redacted\])[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"[?&](code|state|launch)=(?!\[redacted\])[^&\s\"']+"),
    re.compile(r"/join/(?!\[redacted\])[A-Za-z0-9_-]{12,}"),
    re.compile(r"(?<![A-Za-z0-9])(MSH|PID|SCH|PV1|AIP|AIS|RGS|NK1|AIL|AIG|TQ1)\|(?!\[redacted\])"),
]


def _segments(raw: bytes) -> list[list[str]]:
    text = raw.decode("latin-1")
    return [line.split("|") for line in re.split(r"\r\n|\r|\n", text) if line]


def sample_phi() -> tuple[list[str], list[str], list[bytes]]:
    """Names (PID-5 family and given), phone numbers (PID-13/14 first component) and the samples' bytes."""
    names: set[str] = set()
    phones: set[str] = set()
    raws = []
    for path in sorted(SAMPLES.glob("*.hl7")):
        raw = path.read_bytes()
        raws.append(raw)
        for fields in _segments(raw):
            if fields[0] != "PID":
                continue
            for repetition in (fields[5] if len(fields) > 5 else "").split("~"):
                for part in repetition.split("^")[:2]:
                    part = part.split("&")[-1]
                    if len(part) >= 4 and part.isalpha():
                        names.add(part)
            for index in (13, 14):
                value = fields[index].split("~")[0].split("^")[0] if len(fields) > index else ""
                if sum(c.isdigit() for c in value) >= 7:
                    phones.add(value)
    return sorted(names), sorted(phones), raws


def _request(method: str, route: str, *, params=None, headers=None, body=b"", route_params=None) -> func.HttpRequest:
    return func.HttpRequest(method, f"http://127.0.0.1/api/{route}", headers=headers or {}, params=params or {},
                            route_params=route_params or {}, body=body)


def _leaks(texts: list[str], needles: list[str], words: list[str]) -> list[str]:
    found = []
    for text in texts:
        for needle in needles:
            if needle in text:
                found.append(f"{needle!r} in {text[:200]!r}")
        for word in words:
            if re.search(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", text):
                found.append(f"name {word!r} in {text[:200]!r}")
        for pattern in GENERIC:
            match = pattern.search(text)
            if match:
                found.append(f"{match.group(0)!r} in {text[:200]!r}")
    return found


def _record_texts(records: list[logging.LogRecord]) -> list[str]:
    texts = []
    for record in records:
        texts.append(record.getMessage())
        if record.exc_text:
            texts.append(record.exc_text)
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(str(record.exc_info[1]))
    return texts


def test_bad_inputs_leave_no_phi_in_logs(app, environment_id, clock, caplog):
    from datetime import UTC, datetime

    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    clock.set(now)
    caplog.set_level(logging.DEBUG)
    names, phones, raws = sample_phi()
    env = make_environment(app, environment_id)
    start = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)

    for raw in raws:  # every fixture sample, as it is (accepted or rejected)
        post_hl7(env.id, raw)
    bad = [
        b'{"hello": "world"}',
        b"\x00\xff garbage " + DEMO_PHONE.encode(),
        siu("S12", csn="8900001", start=start, control_id="B1", sent=now, processing_id="P", phone=DEMO_PHONE),
        siu("S12", csn="8900002", start=start, control_id="B2", sent=now, phone=DEMO_PHONE).replace(b"SCH|", b"XXX|"),
        siu("S99", csn="8900003", start=start, control_id="B3", sent=now, phone=DEMO_PHONE),
        b"MSH|^~\\&|A|B|C|D|20260101||ACK^S12^ACK|X|P|2.3\rMSA|AA|B1\rPID|1||Z999001||PATIENT^DEMO\r",
        # a sender writing personal data into MSH-10: accepted, refused (MSH-11), and a visit in year 2200
        siu("S12", csn="8900004", start=start, control_id="JOHNSMITH-DOB19800101", sent=now, phone=DEMO_PHONE),
        siu("S12", csn="8900005", start=start, control_id="JANEDOE-DOB19750505", sent=now, processing_id="P"),
        siu("S12", csn="8900006", start=start.replace(year=2200), control_id="ROEMARY-DOB19600101", sent=now),
    ]
    for body in bad:
        post_hl7(env.id, body)
        post_hl7(env.id, body, sign=False)  # refused before parsing
    post_hl7("no-such-environment", bad[2])
    post_hl7(env.id, bad[2], headers={"Authorization": "Bearer eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"})

    from functions import join, launch

    call = {name: getattr(launch, name).build().get_user_function() for name in
            ("launch_provider", "launch_patient", "launch_callback")}
    call.update({name: getattr(join, name).build().get_user_function() for name in
                 ("join_page", "join_events", "join_call")})
    call["launch_provider"](_request("GET", "launch/provider", params={
        "iss": "https://evil.example/fhir?phone=" + DEMO_PHONE, "launch": "eyJhbGciOiJIUzI1NiJ9.eyJhIjoiYiJ9.x"}))
    call["launch_patient"](_request("GET", "launch/patient", params={"iss": "", "launch": ""}))
    call["launch_callback"](_request("GET", "launch/callback", params={"code": "AUTHCODE-123456", "state": "nope"}))
    call["join_page"](_request("GET", "join/AbCdEfGhIjKlMnOpQrStUv", route_params={"token": "AbCdEfGhIjKlMnOpQrStUv"}))
    call["join_events"](_request("POST", "join/AbCdEfGhIjKlMnOpQrStUv/events",
                                 headers={"content-type": "application/json"}, body=b'{"type": "PATIENT^DEMO"}',
                                 route_params={"token": "AbCdEfGhIjKlMnOpQrStUv"}))
    call["join_call"](_request("POST", "join/AbCdEfGhIjKlMnOpQrStUv/call", headers={"content-type": "application/json"},
                               body=b"{}", route_params={"token": "AbCdEfGhIjKlMnOpQrStUv"}))

    texts = _record_texts(caplog.records)
    assert texts, "nothing was logged: the capture is not working"
    needles = [*DEMO_PHONES, *DEMO_NAMES, *DEMO_SEGMENTS, *phones, "AUTHCODE-123456", "AbCdEfGhIjKlMnOpQrStUv",
               "JOHNSMITH", "JANEDOE", "ROEMARY", "DOB19"]
    assert _leaks(texts, needles, names) == []
    hashed = "#" + hashlib.sha256(b"JOHNSMITH-DOB19800101").hexdigest()[:12]
    assert any(f"msh10={hashed} event=S12 outcome=created" in text for text in texts), texts


@pytest.mark.e2e
def test_demo_scenario_leaves_no_phi_in_logs(service_settings, caplog):
    from lib.observability import logging_setup
    from local.demo import run_demo

    # The in-process parts (the demo's Services, its HTTP client) run under the app's logging setup, as
    # every process of the app does; the dev runner configures its own on the first invocation.
    logging_setup.configure()
    caplog.set_level(logging.DEBUG)
    trace: list[str] = []
    result = run_demo("test", out=trace.append)
    from local import services

    log_text = (services.run_dir("test", ROOT) / "devrunner.log").read_text(encoding="utf-8", errors="replace")
    assert "function=hl7_intake" in log_text or '"hl7_intake' in log_text or "hl7_intake" in log_text

    link_tokens = [m.group(1) for t in result.texts for m in re.finditer(r"/api/join/([A-Za-z0-9_-]+)", t["message"])]
    assert link_tokens, "the demo's texts carry a join link"
    needles = [*DEMO_PHONES, *DEMO_NAMES, *DEMO_SEGMENTS, *link_tokens]
    texts = [*log_text.splitlines(), *_record_texts(caplog.records)]
    assert _leaks(texts, needles, []) == []
    assert not re.search(r"(?<![A-Za-z])PATIENT(?![A-Za-z])", log_text)


def test_the_checks_would_catch_a_leak():
    names, phones, _ = sample_phi()
    assert names and phones, "the fixture samples carry names and phone numbers"
    leaked = [f"texting {DEMO_PHONE}", "PID|1||Z999001||PATIENT^DEMO", "Authorization: Bearer abcdefgh12345",
              f"patient {names[0]} arrived", "GET /api/launch/callback?code=abc"]
    assert len(_leaks(leaked, [*DEMO_PHONES, *DEMO_NAMES, *DEMO_SEGMENTS], names)) >= len(leaked)


