"""Inbound keywords and webhook authentication (lib.sms.events), without services."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.sms.event_schema import DeliveryReportData, MalformedEvent, ReceivedData, parse_batch
from lib.sms.events import WebhookRejected, check_caller, keyword

TOPIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/acs"


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("STOP", "STOP"), ("stop", "STOP"), (" Stop. ", "STOP"), ("Stop please", "STOP"), ("STOPALL", "STOPALL"),
        ("stop all", "STOPALL"), ("unsubscribe", "UNSUBSCRIBE"), ("Cancel", "CANCEL"), ("end", "END"),
        ("QUIT", "QUIT"), ("revoke", "REVOKE"), ("opt out", "OPTOUT"), ("opt-out", "OPTOUT"), ("OPTOUT", "OPTOUT"),
        ("START", "START"), ("unstop", "UNSTOP"), ("HELP", "HELP"), ("info?", "INFO"),
        ("see you then", None), ("", None), ("12345", None), ("stopwatch", None),
        # full-width and look-alike letters (Cyrillic DZE, TE, O, ER; Greek TAU, OMICRON, RHO)
        ("ＳＴＯＰ", "STOP"), ("ｓｔｏｐ", "STOP"), ("\u0405\u0422\u041e\u0420", "STOP"),
        ("S\u03a4\u039f\u03a1", "STOP"),
        # free-text intent, anywhere in the text, winning over HELP
        ("please stop texting me", "FREETEXT"), ("Remove me from this list", "REMOVE"),
        ("Help me stop these texts", "FREETEXT"), ("don't text me again", "FREETEXT"),
        ("No more messages please", "FREETEXT"), ("wrong number", "FREETEXT"), ("Please unsubscribe me", "FREETEXT"),
        ("I can stop by at 3", None), ("Can I cancel my appointment?", None), ("Thanks, see you Tuesday", None),
        # Spanish templates may say "Responda PARA": alone it opts out; "para" inside a sentence is "for"
        ("PARA", "PARA"), ("para.", "PARA"), ("Parar", "PARAR"), ("Para mañana a qué hora?", None),
    ],
)
def test_keywords(text, word):
    assert keyword(text) == word


def test_caller_with_the_right_key_and_topic_passes():
    check_caller(expected_key="k" * 32, given_key="k" * 32, expected_topic=TOPIC, events=[{"topic": TOPIC.upper()}])


@pytest.mark.parametrize(
    ("expected", "given", "events", "status", "reason"),
    [
        (None, "k", [], 403, "EVENTGRID_WEBHOOK_KEY is not configured: the webhook refuses every call"),
        ("k" * 32, None, [], 401, "no webhook key in the request"),
        ("k" * 32, "k" * 31, [], 403, "wrong webhook key"),
        ("k" * 32, "k" * 32, [{"topic": TOPIC + "2"}], 403, "event from a topic other than ACS_RESOURCE_ID"),
    ],
)
def test_caller_is_refused(expected, given, events, status, reason):
    with pytest.raises(WebhookRejected) as info:
        check_caller(expected_key=expected, given_key=given, expected_topic=TOPIC, events=events)
    assert (info.value.status, info.value.reason) == (status, reason)


def test_validation_event_needs_the_key_but_not_the_topic():
    event = {"topic": "/subscriptions/s/other", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent"}
    check_caller(expected_key="k", given_key="k", expected_topic=TOPIC, events=[event])


def _received(message: object, **changes: object) -> dict:
    event = {"id": "e1", "topic": TOPIC, "eventType": "Microsoft.Communication.SMSReceived",
             "eventTime": "2026-11-29T17:00:00.1234567Z", "dataVersion": "1.0",
             "data": {"messageId": "Incoming_1", "from": "+12015550141", "to": "+18005550100", "message": message}}
    event.update(changes)
    return event


def test_event_grid_times_with_seven_fraction_digits_are_read():
    valid, malformed = parse_batch([_received("STOP")])
    assert malformed == []
    assert valid[0].event_time == datetime(2026, 11, 29, 17, 0, 0, 123456, tzinfo=UTC)
    assert valid[0].data == ReceivedData.model_validate({"from": "+12015550141", "to": "+18005550100",
                                                          "message": "STOP"})


def test_each_malformed_event_is_named_by_position_type_and_field_never_by_value():
    delivery = {"id": "e3", "eventType": "Microsoft.Communication.SMSDeliveryReportReceived",
                "eventTime": "2026-11-29T17:00:00Z",
                "data": {"messageId": "m", "from": "+18005550100", "to": "+12015550141",
                         "deliveryStatus": {"status": "Delivered"}}}
    batch = [
        _received(["STOP"]),  # a list where ACS sends a string
        _received("STOP"),
        delivery,
        _received("STOP", eventTime="2026-11-29T17:00:00"),  # no zone: cannot be ordered against others
        "not an object",
        _received("START", eventType="Microsoft.Storage.BlobCreated", data=[1, 2]),  # not ours: ignored, not read
    ]
    valid, malformed = parse_batch(batch)
    assert [(e.id, e.event_type) for e in valid] == [
        ("e1", "Microsoft.Communication.SMSReceived"), ("e1", "Microsoft.Storage.BlobCreated")]
    assert valid[1].data is None
    assert malformed == [
        MalformedEvent(0, "Microsoft.Communication.SMSReceived", ("data.message",)),
        MalformedEvent(2, "Microsoft.Communication.SMSDeliveryReportReceived", ("data.deliveryStatus",)),
        MalformedEvent(3, "Microsoft.Communication.SMSReceived", ("eventTime",)),
        MalformedEvent(4, None, ()),
    ]
    assert malformed[0].describe() == "event 0 (Microsoft.Communication.SMSReceived): data.message"
    assert "+1201" not in " ".join(m.describe() for m in malformed)


def test_a_delivery_report_without_message_id_keeps_its_tag():
    event = {"id": "e", "eventType": "Microsoft.Communication.SMSDeliveryReportReceived",
             "eventTime": "2026-11-29T17:00:00Z",
             "data": {"messageId": None, "from": "+18005550100", "to": "+12015550141", "deliveryStatus": "Delivered",
                      "tag": "env|csn|booked|1"}}
    (parsed,), () = parse_batch([event])
    assert isinstance(parsed.data, DeliveryReportData)
    assert (parsed.data.message_id, parsed.data.tag) == (None, "env|csn|booked|1")
