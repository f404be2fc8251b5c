"""Differential test: our focused ER7 reader against python-hl7 (the oracle), field by field.

For every fixture sample and for mutated messages, every raw field/component value that
``lib.hl7`` reads is compared with python-hl7's ``extract_field`` (escapes left in place) after the
same decoding and line-ending normalisation (python-hl7 splits only on ``\\r``, hl7.md §10).

Documented differences, not compared:
- python-hl7 raises IndexError when a path goes below a leaf (``SCH.F1.R1.C2`` of ``a``); our
  reader answers ``""`` (absent), which is python-hl7's own answer for a missing trailing part.
- messages whose MSH-1/MSH-2 python-hl7 reads differently (degenerate MSH-2) or that either side
  refuses are skipped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import hl7
import hl7.containers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.hl7.er7 import Er7Message
from lib.hl7.errors import HL7Rejected, NotHL7
from lib.hl7.framing import unframe
from lib.hl7.siu import parse_siu
from lib.languages import language_code
from tests.unit.hl7.samples import load_sample, sample_names

# (segment, field, max repetitions, components) read by lib.hl7
PATHS: tuple[tuple[str, int, int, tuple[int, ...]], ...] = (
    ("MSH", 7, 1, (1,)),
    ("MSH", 9, 1, (1, 2, 3)),
    ("MSH", 10, 1, (1,)),
    ("MSH", 11, 1, (1,)),
    ("MSH", 12, 1, (1,)),
    ("MSH", 15, 1, (1,)),
    ("MSH", 16, 1, (1,)),
    ("MSH", 18, 1, (1,)),
    ("SCH", 1, 1, (1,)),
    ("SCH", 2, 1, (1,)),
    ("SCH", 7, 1, (1,)),
    ("SCH", 8, 1, (1,)),
    ("SCH", 9, 1, (1,)),
    ("SCH", 10, 1, (1,)),
    ("SCH", 11, 3, (3, 4, 5)),
    ("SCH", 25, 1, (1,)),
    ("TQ1", 7, 1, (1,)),
    ("TQ1", 8, 1, (1,)),
    ("TQ1", 13, 1, (1, 2)),
    ("PID", 13, 4, (1, 2, 3, 4, 5, 6, 7, 12)),
    ("PID", 14, 4, (1, 2, 3, 4, 5, 6, 7, 12)),
    ("PID", 15, 1, (1,)),
    ("PID", 40, 4, (1, 2, 3, 4, 5, 6, 7, 12)),
    ("PV1", 3, 1, (1, 2)),
    ("PV1", 7, 1, (1,)),
    ("PV1", 19, 1, (1,)),
    ("RGS", 3, 1, (1, 2)),
    ("AIS", 3, 1, (1,)),
    ("AIS", 4, 1, (1,)),
    ("AIS", 7, 1, (1,)),
    ("AIS", 8, 1, (1,)),
    ("AIG", 8, 1, (1,)),
    ("AIG", 11, 1, (1,)),
    ("AIG", 12, 1, (1,)),
    ("AIL", 3, 1, (1, 2, 4)),
    ("AIL", 6, 1, (1,)),
    ("AIL", 9, 1, (1,)),
    ("AIL", 10, 1, (1,)),
    ("AIP", 3, 1, (1,)),
    ("AIP", 6, 1, (1,)),
    ("AIP", 9, 1, (1,)),
    ("AIP", 10, 1, (1,)),
)
RAW_MSH_FIELDS = (3, 4, 5, 6)


@pytest.fixture(autouse=True)
def _oracle_keeps_escapes(monkeypatch):
    """python-hl7's extract_field unescapes leaves; compare the raw values instead."""
    monkeypatch.setattr(hl7.containers, "unescape", lambda container, field, app_map=None: field)


def _oracle_part(msg: hl7.Message, sid: str, n: int, field: int, rep: int, comp: int) -> str:
    try:
        return msg.extract_field(sid, n, field, rep, comp, 1)
    except IndexError:
        return ""


def _pairs(raw: bytes) -> tuple[Er7Message, hl7.Message] | None:
    """Our message and python-hl7's, from the same decoded text; None when either refuses it."""
    try:
        ours = Er7Message.from_bytes(unframe(raw))
    except (NotHL7, HL7Rejected):
        return None
    text = ours.text.strip()
    ours = Er7Message(text, ours.seps, ours.codec, ours.charset)
    try:
        theirs = hl7.parse(text)
    except Exception:
        return None
    s = ours.seps
    if theirs.separators != "\r" + s.field + s.repetition + s.component + s.subcomponent or theirs.esc != s.escape:
        return None
    return ours, theirs


def _differences(ours: Er7Message, theirs: hl7.Message) -> Iterator[str]:
    for sid in sorted({p[0] for p in PATHS}):
        mine = ours.segments(sid)
        try:
            count = len(theirs.segments(sid))
        except KeyError:
            count = 0
        if len(mine) != count:
            yield f"{sid}: {len(mine)} segments vs {count}"
            continue
        for index, seg in enumerate(mine, start=1):
            for psid, field, reps, comps in PATHS:
                if psid != sid:
                    continue
                for rep in range(1, reps + 1):
                    for comp in comps:
                        a = ours.part(seg, field, rep, comp)
                        b = _oracle_part(theirs, sid, index, field, rep, comp)
                        if a != b:
                            yield f"{sid}[{index}]-{field}.R{rep}.C{comp}: {a!r} vs {b!r}"
    msh = ours.first("MSH")
    their_msh = theirs.segment("MSH")
    for field in RAW_MSH_FIELDS:
        b = str(their_msh(field)) if field < len(their_msh) else ""
        if ours.raw(msh, field) != b:
            yield f"MSH-{field} raw: {ours.raw(msh, field)!r} vs {b!r}"


@pytest.mark.parametrize("name", sample_names())
def test_reader_agrees_with_python_hl7_on_every_sample(name):
    pair = _pairs(load_sample(name))
    assert pair is not None, f"{name} not comparable"
    assert list(_differences(*pair)) == []


def _oracle_value(msg: hl7.Message, sid: str, field: int, comp: int = 1) -> str:
    try:
        segs = msg.segments(sid)
    except KeyError:
        return ""
    for n in range(1, len(segs) + 1):
        try:
            v = msg.extract_field(sid, n, field, 1, comp, 1).strip()
        except IndexError:
            v = ""
        if v and v != '""':
            return v
    return ""


@pytest.mark.parametrize("name", [n for n in sample_names() if n[:2] not in {"05", "27", "28", "30"}])
def test_extracted_fields_agree_with_python_hl7(name):
    raw = load_sample(name)
    m = parse_siu(raw, time_zone="UTC", default_region="US")
    _ours, theirs = _pairs(raw)
    pv1_19 = _oracle_value(theirs, "PV1", 19)
    assert m.appointment_id == (_oracle_value(theirs, "SCH", 2) or _oracle_value(theirs, "SCH", 1) or pv1_19)
    assert m.visit_number == (pv1_19 or None)
    assert m.language == language_code(_oracle_value(theirs, "PID", 15))
    assert m.provider_ehr_id == (_oracle_value(theirs, "AIP", 3) or _oracle_value(theirs, "PV1", 7) or None)
    expected_visit = (
        _oracle_value(theirs, "AIS", 3) or _oracle_value(theirs, "SCH", 8) or None
    )
    assert m.visit_type == expected_visit
    assert m.filler_status_hint == (_oracle_value(theirs, "SCH", 25) or None)
    assert m.header.control_id == theirs.extract_field("MSH", 1, 10)
    assert m.header.trigger_event == theirs.extract_field("MSH", 1, 9, 1, 2)


def test_unescape_agrees_with_python_hl7_where_both_define_the_result(monkeypatch):
    monkeypatch.undo()  # real python-hl7 unescape
    raw = b"MSH|^~\\&|A|B|C|D|2026||SIU^S12|1|P|2.5\rSCH|x|a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X414243\\g"
    ours = Er7Message.from_bytes(raw)
    theirs = hl7.parse(raw.decode())
    assert ours.value(ours.first("SCH"), 2) == theirs.extract_field("SCH", 1, 2) == "a|b^c&d~e\\fABCg"


# --- mutated messages ---------------------------------------------------------------------------

SIU_SAMPLES = [n for n in sample_names() if n[:2] not in {"27", "28", "30"}]
_ALPHABET = '|^~&\\ABCxyz019 .+-"@'


def _mutate(raw: bytes, rnd: random.Random) -> bytes:
    text = unframe(raw).decode("utf-8", "replace")
    segs = text.split("\r")
    for _ in range(rnd.randint(1, 6)):
        op = rnd.randrange(5)
        i = rnd.randrange(len(segs))
        if op == 0 and i > 0:  # duplicate a segment
            segs.insert(rnd.randrange(1, len(segs) + 1), segs[i])
        elif op == 1 and i > 0:  # drop a segment
            del segs[i]
        elif op == 2:  # insert random delimiter-rich text
            s = segs[i]
            pos = rnd.randrange(9 if i == 0 else 4, len(s) + 1) if len(s) >= (9 if i == 0 else 4) else len(s)
            junk = "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(1, 12)))
            segs[i] = s[:pos] + junk + s[pos:]
        elif op == 3 and i > 0:  # move a segment
            segs.insert(rnd.randrange(1, len(segs) + 1), segs.pop(i))
        else:  # truncate a segment
            s = segs[i]
            keep = rnd.randrange(9, len(s) + 1) if i == 0 and len(s) > 9 else len(s)
            segs[i] = s[:keep]
    return "\r".join(segs).encode("utf-8")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(SIU_SAMPLES), seed=st.integers(0, 2**32 - 1))
def test_reader_agrees_with_python_hl7_on_mutated_messages(name, seed):
    mutated = _mutate(load_sample(name), random.Random(seed))
    pair = _pairs(mutated)
    if pair is None:
        return
    assert list(_differences(*pair)) == []
