"""Properties of the whole intake against the Cosmos-compatible server (issue: "Proof").

- Stateful: random sequences of S12/S13/S14/S15/S17/S26 for one appointment, delivered out of order, with
  duplicates and redeliveries, always leave the appointment in the state a reference model of the lifecycle
  rules gives (newest by MSH-7 then MSH-10 as a counter; an S13/S14 never books an ended visit again; no
  number kept for an ended visit), and every resend of an MSH-10 gets the ACK it got the first time.
- Fuzz at the HTTP function: any bytes, and any mutation of the fixture samples, get an ACK or a problem
  response (never the 503 that hides an exception), in bounded time.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from lib.hl7.siu import STATUS_BY_EVENT
from lib.models import SmsSettings, appointment_key
from local.siu_builder import siu
from tests.conftest import SAMPLES
from tests.support.calls import msa, post_hl7
from tests.support.environments import make_environment

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
CSN = "9100001"
EVENTS = sorted(STATUS_BY_EVENT)  # S12 S13 S14 S15 S17 S26


#: Statuses after which only a newer S12 books the visit again (docs/hl7-intake.md "Order of messages").
ENDED = {"cancelled", "deleted", "noshow"}


def test_random_lifecycles_end_in_the_state_the_lifecycle_rules_give(app, clock):
    """A reference model replays each arrival: newer by (MSH-7, MSH-10 as a number) applies, older or equal
    changes nothing, and an S13/S14 never books a cancelled, deleted or no-show visit again. Control IDs
    count up from ``M95``, so runs cross ``M99`` -> ``M100`` (ordered as text, the later one would lose)."""
    clock.set(NOW + timedelta(minutes=21))  # every MSH-7 sent below is in the past

    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.env = f"sm-{uuid.uuid4().hex[:10]}"
            make_environment(app, self.env, hl7_auth="none", sms=SmsSettings(enabled=False))
            self.sent: list[tuple[datetime, int, str, datetime, bytes]] = []  # (MSH-7, counter, event, start, raw)
            self.acks: dict[str, bytes] = {}
            self.counter = 94
            # the model: (MSH-7, counter) applied last, status, start
            self.model: tuple[tuple[datetime, int], str, datetime] | None = None

        def _post(self, message: tuple[datetime, int, str, datetime, bytes]) -> None:
            sent, counter, event, start, raw = message
            control = f"M{counter}"
            response = post_hl7(self.env, raw, sign=False)
            assert response.status_code == 200
            assert msa(response)[1:3] == ["AA", control]
            first = self.acks.setdefault(control, response.get_body())
            assert response.get_body() == first  # a duplicate gets the very same ACK
            if self.model is None:
                self.model = ((sent, counter), STATUS_BY_EVENT[event], start)
            elif (sent, counter) > self.model[0]:
                status = self.model[1]
                kept = status in ENDED and event in ("S13", "S14")
                self.model = ((sent, counter), status if kept else STATUS_BY_EVENT[event], start)

        @rule(event=st.sampled_from(EVENTS), minute=st.integers(0, 20), hours=st.integers(0, 48))
        def send(self, event: str, minute: int, hours: int) -> None:
            self.counter += 1
            sent, start = NOW + timedelta(minutes=minute), START + timedelta(hours=hours)
            raw = siu(event, csn=CSN, start=start, control_id=f"M{self.counter}", sent=sent, processing_id="T")
            self.sent.append((sent, self.counter, event, start, raw))
            self._post(self.sent[-1])

        @rule(data=st.data())
        def redeliver(self, data: st.DataObject) -> None:
            if self.sent:
                self._post(data.draw(st.sampled_from(self.sent)))

        @invariant()
        def stored_visit_is_the_models(self) -> None:
            if self.model is None:
                return
            (_sent, counter), status, start = self.model
            key = appointment_key(self.env, CSN)
            stored = app.repos.appointments.get(key)
            assert (stored.status, stored.start_utc) == (status, start)
            assert stored.order_key.endswith(f"|M{counter}")
            if status in ENDED:  # no number is kept for a visit that will not take place
                assert app.repos.contacts.phone(key, now=app.clock.now()) is None

    run_state_machine_as_test(
        Lifecycle,
        settings=settings(max_examples=20, stateful_step_count=10, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )


# ---- fuzz through the HTTP function --------------------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
SAMPLE_BYTES = [p.read_bytes() for p in sorted(SAMPLES.glob("*.hl7"))]
_DELIMS = [b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n", b"\x0b", b"\x1c", b'""', b"\\X0\\", b"MSH|"]
#: Slowest acceptable answer for one message (generous: the shared CI machine is noisy).
BOUND_SECONDS = 5.0


@pytest.fixture(scope="module")
def fuzz_env(app):
    environment_id = f"fz-{uuid.uuid4().hex[:10]}"
    make_environment(app, environment_id, hl7_auth="none")
    return environment_id


def check_answer(environment_id: str, body: bytes) -> None:
    started = time.perf_counter()
    response = post_hl7(environment_id, body, sign=False)
    assert time.perf_counter() - started < BOUND_SECONDS
    # 503 is what the trigger answers when an exception escapes: it must never happen here.
    assert response.status_code in (200, 400, 413), response.get_body()[:200]
    if response.status_code == 200:
        assert response.mimetype.startswith("application/hl7-v2+er7; charset=")
        assert msa(response)[1] in ("AA", "AR", "AE", "CA", "CR", "CE")
    else:
        assert json.loads(response.get_body())["status"] == response.status_code


@FUZZ
@given(body=st.binary(max_size=4096))
def test_any_bytes_get_an_ack_or_a_problem(fuzz_env, body):
    check_answer(fuzz_env, body)


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SAMPLE_BYTES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["insert", "delete", "flip", "repeat", "truncate"]))
        at = draw(st.integers(0, len(raw)))
        if kind == "insert":
            raw[at:at] = draw(st.sampled_from(_DELIMS)) * draw(st.integers(1, 50))
        elif kind == "delete":
            del raw[at : at + draw(st.integers(1, 40))]
        elif kind == "flip" and at < len(raw):
            raw[at] = draw(st.integers(0, 255))
        elif kind == "repeat":
            raw[at:at] = bytes(raw[at : at + 30]) * draw(st.integers(2, 200))
        else:
            del raw[at:]
    return bytes(raw)


@FUZZ
@given(body=mutated_sample())
def test_any_mutation_of_a_sample_gets_an_ack_or_a_problem(fuzz_env, body):
    check_answer(fuzz_env, body)


@pytest.mark.parametrize("shape", ["reps", "field", "segments"])
def test_pathological_messages_are_answered_in_bounded_time(app, fuzz_env, shape):
    head = siu("S12", csn="9200001", start=START, control_id=f"P-{shape}", sent=NOW)
    first, rest = head.split(b"\r", 1)
    if shape == "reps":  # 100k repetitions in PID-13 and SCH-11
        body = first + b"\r" + rest.replace(b"|(201)555-0123|", b"|" + b"~" * 100_000 + b"|").replace(
            b"|^^^", b"|" + b"^^^2026~" * 20_000 + b"^^^")
    elif shape == "field":  # one huge field just under the size cap
        body = head + b"NTE|1||" + b"x" * (app.settings.hl7_max_bytes - len(head) - 64) + b"\r"
    else:  # 50k unknown Z-segments
        body = head + b"ZZZ|1\r" * 50_000
    assert len(body) <= app.settings.hl7_max_bytes
    check_answer(fuzz_env, body)
