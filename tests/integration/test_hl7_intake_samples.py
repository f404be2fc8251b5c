"""Every real sample message, posted to the intake, gets the ACK an interface analyst expects, and what
was accepted can be read back from Cosmos DB (issue: foundation, "Real input")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lib.hl7.header import read_header
from lib.models import appointment_key
from lib.scheduling.message_time import message_instant
from tests.conftest import SAMPLES
from tests.support.calls import msa, post_hl7, segment
from tests.support.environments import make_environment
from tests.unit.hl7.samples import SITE

pytestmark = pytest.mark.integration


# ACK code and error condition (HL7 table 0357) of the messages that must be refused.
REFUSED = {
    "05-gmed-s12-v231-pid-only-no-sch-invalid.hl7": ("AR", "101"),
    "27-neg-python-hl7-sample-oru-r01-v24.hl7": ("AR", "200"),
    "28-neg-fhirconv-adt-a01-v28-escape-T.hl7": ("AR", "200"),
}

# An ACK sent to the intake is never acknowledged (hl7.md §8 "Do not ACK an ACK"): HTTP 400, kept.
ACK_SAMPLE = "30-ack-mirth-ca-escaped-sender-v23.hl7"

# Field-by-field expectations: appointment ID, UTC start, duration (min), status, SMS phone (E.164).
EXPECTED = {
    "01-epic-cadence-spec-s12-v23.hl7": ("36996", datetime(2010, 5, 27, 16, 15, tzinfo=UTC), 30, "booked", None),
    "03-corepoint-gpms-s14-v23-arrived-trailing-space.hl7": (
        "00331839401", datetime(2008, 3, 6, 16, 0, tzinfo=UTC), 20, "booked", "+18325550187"),
    "04-interfaceware-mesa-s12-v23.hl7": (
        "2196178", datetime(2011, 6, 17, 12, 45, tzinfo=UTC), 45, "booked", "+12605550199"),
    "10-nhs-trust-pas-s26-v24-dna-numeric-status.hl7": (
        "APT001", datetime(2019, 10, 24, 8, 45, tzinfo=UTC), 10, "noshow", None),
    "12-samedi-s12-v25-utf8-tz-offsets-tq1-aig-only.hl7": (
        "a-\u00ebqcdl7hwscfuze4w", datetime(2026, 5, 16, 11, 0, tzinfo=UTC), 30, "booked", "+491725550123"),
    "14-samedi-s15-v25-cancel-status-deleted.hl7": (
        "a-\u00ebqcdl7hwscfuze4w", datetime(2026, 5, 16, 12, 0, tzinfo=UTC), 30, "cancelled", None),
    "17-clicrdv-s26-v251-noshow-status-still-booked.hl7": (
        "49849903800", datetime(2016, 12, 31, 10, 0, tzinfo=UTC), 30, "noshow", None),
    "23-fhirconv-s15-v28-cancelled.hl7": ("36996", datetime(2021, 9, 24, 7, 15, tzinfo=UTC), 50, "cancelled", None),
}

# Senders asking for enhanced acknowledgement mode (MSH-15 AL, MSH-16 NE).
ENHANCED_MODE = {"10-nhs-trust-pas-s26-v24-dna-numeric-status.hl7"}

ALL_SAMPLES = sorted(p.name for p in SAMPLES.glob("*.hl7"))


def configure(app, environment_id: str, sample: str):
    zone, region = SITE.get(sample[:2], ("America/New_York", "US"))
    return make_environment(app, environment_id, kind="production", time_zone=zone, default_region=region)


def test_the_fixture_samples_are_all_covered():
    assert len(ALL_SAMPLES) == 22
    assert set(REFUSED) | set(EXPECTED) | {ACK_SAMPLE} <= set(ALL_SAMPLES)


def test_an_ack_sent_to_the_intake_is_not_acknowledged_but_answered_400_and_kept(app, environment_id):
    configure(app, environment_id, ACK_SAMPLE)
    raw = (SAMPLES / ACK_SAMPLE).read_bytes()
    response = post_hl7(environment_id, raw)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    doc = json.loads(response.get_body())
    assert doc["code"] == "ack_not_accepted"
    assert b"MSA" not in response.get_body()
    kept = app.repos.rejected.get(environment_id, doc["rejectedMessageId"])
    assert kept.raw == raw


@pytest.mark.parametrize("sample", [s for s in ALL_SAMPLES if s != ACK_SAMPLE])
def test_each_sample_is_acknowledged_never_a_server_error(app, environment_id, sample):
    configure(app, environment_id, sample)
    raw = (SAMPLES / sample).read_bytes()
    response = post_hl7(environment_id, raw)
    assert response.status_code == 200
    assert response.mimetype.startswith("application/hl7-v2+er7; charset=")
    fields = msa(response)
    control_id = raw.split(b"\r")[0].split(b"|")[9].decode("latin-1")
    assert fields[2] == control_id
    if sample in REFUSED:
        code, err = REFUSED[sample]
        assert fields[1] == code
        err_segment = segment(response, "ERR")
        assert err_segment is not None and err in "|".join(err_segment)
        kept = app.repos.rejected.list(environment_id)
        assert [k.raw for k in kept] == [raw]
    else:
        # Original mode answers AA; a sender asking for enhanced mode (MSH-15/16 valued) gets CA.
        assert fields[1] == ("CA" if sample in ENHANCED_MODE else "AA")


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_accepted_sample_is_stored_field_by_field(app, clock, environment_id, sample):
    appointment_id, start, duration, status, phone = EXPECTED[sample]
    raw = (SAMPLES / sample).read_bytes()
    # The day before the sample's visit (still ahead, and inside the 5 years the intake accepts), or the
    # sample's own MSH-7 when it was sent later than that (a message is never from the future).
    zone = SITE.get(sample[:2], ("America/New_York", "US"))[0]
    sent = message_instant(read_header(raw), zone, datetime(2100, 1, 1, tzinfo=UTC))
    now = max(start - timedelta(days=1), sent)
    clock.set(now)
    configure(app, environment_id, sample)
    assert msa(post_hl7(environment_id, raw))[1] in ("AA", "CA")
    stored = app.repos.appointments.get(appointment_key(environment_id, appointment_id))
    assert stored is not None
    assert (stored.appointment_id, stored.start_utc, stored.duration_minutes, stored.status) == (
        appointment_id, start, duration, status,
    )
    assert app.repos.contacts.phone(stored.key, now=now) == phone


def test_stored_appointment_holds_no_patient_name_or_phone(app, environment_id):
    sample = "04-interfaceware-mesa-s12-v23.hl7"
    configure(app, environment_id, sample)
    post_hl7(environment_id, (SAMPLES / sample).read_bytes())
    doc = app.store.container("visits").read_item(
        item=appointment_key(environment_id, "2196178"), partition_key=appointment_key(environment_id, "2196178")
    )
    text = json.dumps(doc)
    for phi in ("BROWN", "PETER", "555-0199", "5550199", "Maple"):
        assert phi not in text


@pytest.mark.parametrize(("sample", "charset"), [
    ("15-samedi-inbound-s12-v25-8859-no-tz-ail-aip.hl7", "ISO-8859-1"),
    ("12-samedi-s12-v25-utf8-tz-offsets-tq1-aig-only.hl7", "UTF-8"),
])
def test_ack_declares_the_charset_of_the_inbound_message(app, environment_id, sample, charset):
    configure(app, environment_id, sample)
    response = post_hl7(environment_id, (SAMPLES / sample).read_bytes())
    assert response.mimetype == f"application/hl7-v2+er7; charset={charset}"
