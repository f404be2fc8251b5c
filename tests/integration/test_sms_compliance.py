"""SMS rules end to end (issue: SMS confirmations and reminders): HL7 -> outbox -> ACS stand-in -> Event Grid
webhook. Exact texts and times; opt-out, HELP, delivery reports, webhook authentication, rate limit, quiet
hours at send time, crash recovery, scripted ACS faults, and the privacy proof.

Each test uses its own recipient numbers (fictional +1 201 555 01xx), because opt-outs are per (sender,
recipient) and outlive a test."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from lib.models import SmsSettings, appointment_key
from lib.queues import encode
from lib.store.schema import CONTAINERS
from local.siu_builder import siu
from tests.support.calls import msa, post_hl7
from tests.support.environments import SENDER, make_environment
from tests.support.standins import AcsStandin

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)  # Sun 12:00 EST
START = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)  # Thu Dec 3, 3:00 PM EST
KEY = "test-webhook-key-" + "x" * 16
#: libphonenumber's example GB mobile (Ofcom's 07700 900xxx drama range is not a valid number there).
UK_MOBILE = "+447400123456"
ACS_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.Communication/communicationServices/acs-test"
)


@pytest.fixture
def acs(service_settings):
    standin = AcsStandin(service_settings)
    yield standin
    standin.clear_faults()


@pytest.fixture(autouse=True)
def fresh_sms_state(app):
    """Forget opt-outs, HELP markers and rate windows of this module's numbers: the local store outlives a
    test session, and these records are (rightly) keyed by number, not by test environment."""
    from lib.store.cosmos import delete_if_exists

    opt_outs, timer_state = app.store.container("opt_outs"), app.store.container("timer_state")
    for sender in (SENDER, "+12015550190"):
        delete_if_exists(timer_state, f"sms-rate|{sender}", f"sms-rate|{sender}")
    pairs = [(SENDER, f"+12015550{n}") for n in (*range(140, 148), 151, 152, 153, 156, *range(170, 190), 192)]
    pairs += [("+12015550154", "+12015550155"), ("+12015550157", "+12015550158")]
    for sender, phone in pairs:
        pair = app.opt_outs.pair_hash(sender, phone)
        delete_if_exists(opt_outs, f"optout|{pair}", f"optout|{pair}")
        delete_if_exists(opt_outs, f"undeliverable|{pair}", f"undeliverable|{pair}")
        for day in ("2026-11-29", "2026-11-30"):
            delete_if_exists(opt_outs, f"help|{pair}|{day}", f"help|{pair}|{day}")


@pytest.fixture
def webhook(app, monkeypatch):
    """The app with the webhook key and ACS resource ID configured."""
    monkeypatch.setattr(
        app, "settings", dataclasses.replace(app.settings, eventgrid_webhook_key=KEY, acs_resource_id=ACS_ID)
    )
    return app


def start_clock(app, clock, at: datetime) -> None:
    clock.set(at)


def book(env, csn: str, phone: str, *, event="S12", control=None, sent=NOW, start=START, language="ENG"):
    return post_hl7(
        env.id,
        siu(event, csn=csn, start=start, control_id=control or uuid.uuid4().hex[:12], sent=sent, phone=phone,
            language=language),
    )


def items(app, env, csn):
    return {i.id.split("|", 2)[2]: i for i in app.repos.outbox.for_appointment(appointment_key(env.id, csn))}


def send_queued(app, env, csn) -> None:
    from functions.reminders import sms_outbox

    function = sms_outbox.build().get_user_function()
    for item in items(app, env, csn).values():
        if item.state == "pending" and item.due_utc <= app.clock.now():
            body = encode({"id": item.id}).encode()
            function(QueueMessage(id="m1", body=body, dequeue_count=1))


def run_timer() -> None:
    from functions.reminders import reminders_due

    reminders_due.build().get_user_function()(TimerRequest(past_due=False))


def post_events(events: list[dict], *, code: str | None = KEY) -> func.HttpResponse:
    from functions.events import acs_events

    req = func.HttpRequest(
        method="POST", url="http://127.0.0.1/api/events/acs", headers={"content-type": "application/json"},
        params={"code": code} if code else {}, route_params={}, body=json.dumps(events).encode(),
    )
    return acs_events.build().get_user_function()(req)


def inbound(text: str, patient: str, *, ours: str = SENDER, at: datetime = NOW) -> dict:
    return {
        "id": str(uuid.uuid4()), "topic": ACS_ID, "subject": f"/phonenumber/{patient.lstrip('+')}",
        "eventType": "Microsoft.Communication.SMSReceived", "eventTime": at.isoformat().replace("+00:00", "Z"),
        "dataVersion": "1.0",
        "data": {"messageId": "Incoming_" + uuid.uuid4().hex, "from": patient, "to": ours, "message": text,
                 "receivedTimestamp": at.isoformat()},
    }


def delivery(message_id: str | None, status: str, *, at: datetime, tag: str | None = None, detail: str = "") -> dict:
    return {
        "id": str(uuid.uuid4()), "topic": ACS_ID, "subject": "/phonenumber/12015550100",
        "eventType": "Microsoft.Communication.SMSDeliveryReportReceived",
        "eventTime": at.isoformat().replace("+00:00", "Z"), "dataVersion": "1.0",
        "data": {"messageId": message_id, "from": SENDER, "to": "+12015550151", "deliveryStatus": status,
                 "deliveryStatusDetails": detail, "deliveryAttempts": [], "receivedTimestamp": at.isoformat(),
                 "tag": tag},
    }


# ---- webhook: handshake and authentication ---------------------------------------------------------


def test_subscription_validation_handshake_echoes_the_code(webhook):
    event = {"id": "1", "topic": "/subscriptions/x", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
             "eventTime": "2026-11-29T17:00:00.1234567Z", "data": {"validationCode": "512d38b6-c7b8-40c8-89fe"}}
    response = post_events([event])
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {"validationResponse": "512d38b6-c7b8-40c8-89fe"}


@pytest.mark.parametrize(("code", "status"), [(None, 401), ("wrong", 403), (KEY[:-1], 403)])
def test_webhook_refuses_a_caller_without_the_key(webhook, code, status):
    event = {"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "c"}}
    response = post_events([event], code=code)
    assert response.status_code == status
    assert b"validationResponse" not in response.get_body()


def test_webhook_refuses_events_from_another_acs_resource(webhook):
    event = inbound("STOP", "+12015550150")
    event["topic"] = ACS_ID.replace("acs-test", "acs-other")
    assert post_events([event]).status_code == 403


def test_webhook_fails_closed_without_a_configured_key(app, monkeypatch):
    monkeypatch.setattr(app, "settings", dataclasses.replace(app.settings, eventgrid_webhook_key=None))
    assert post_events([inbound("STOP", "+12015550150")]).status_code == 403


def test_webhook_refuses_a_body_that_is_not_an_event_array(webhook):
    assert post_events({"not": "an array"}).status_code == 400  # type: ignore[arg-type]


def test_a_malformed_event_is_skipped_and_the_stop_beside_it_is_applied(webhook, clock, acs, environment_id,
                                                                          caplog):
    from lib.observability import metrics

    caplog.set_level(logging.INFO)
    env = make_environment(webhook, environment_id)
    start_clock(webhook, clock, NOW)
    phone = "+12015550170"
    bad = inbound("STOP", phone, at=NOW)
    bad["data"]["message"] = ["STOP"]  # a list where ACS sends a string
    no_time = inbound("START", phone, at=NOW + timedelta(seconds=5))
    del no_time["eventTime"]
    before = metrics.total(metrics.SMS_EVENTS_MALFORMED, event_type="SMSReceived")
    response = post_events([bad, inbound("STOP", phone, at=NOW + timedelta(seconds=1)), no_time])
    assert (response.status_code, response.get_body()) == (200, b"")
    assert webhook.opt_outs.is_opted_out(SENDER, phone)  # the START without a time was not applied either
    assert metrics.total(metrics.SMS_EVENTS_MALFORMED, event_type="SMSReceived") - before == 2
    assert "event 0 (Microsoft.Communication.SMSReceived): data.message" in caplog.text
    assert "event 2 (Microsoft.Communication.SMSReceived): eventTime" in caplog.text
    assert "5550170" not in caplog.text
    # The patient's STOP holds: the booking text of a new visit is not sent.
    book(env, "8200020", "(201)555-0170")
    send_queued(webhook, env, "8200020")
    item = items(webhook, env, "8200020")["booked|1"]
    assert (item.state, item.reason) == ("blocked", "the recipient opted out (STOP) of texts from this number")
    assert acs.texts(env.id) == []


def test_a_batch_with_no_usable_event_is_refused_naming_each_event(webhook):
    first = inbound("STOP", "+12015550171")
    first["data"]["message"] = 7
    second = delivery("m1", "Delivered", at=NOW)
    second["data"]["to"] = None
    response = post_events([first, second])
    assert response.status_code == 400
    problem = json.loads(response.get_body())
    assert problem["title"] == "No usable event"
    assert problem["malformed"] == ["event 0 (Microsoft.Communication.SMSReceived): data.message",
                                    "event 1 (Microsoft.Communication.SMSDeliveryReportReceived): data.to"]
    assert "5550171" not in response.get_body().decode()
    assert not webhook.opt_outs.is_opted_out(SENDER, "+12015550171")


# ---- opt-out, opt-in, HELP -------------------------------------------------------------------------


@pytest.fixture
def env(app, clock, environment_id):
    start_clock(app, clock, NOW)
    return make_environment(app, environment_id)


def test_stop_blocks_later_texts_and_start_lifts_it(webhook, env, clock, acs, caplog):
    caplog.set_level(logging.DEBUG)
    phone = "+12015550152"
    book(env, "8200001", "(201)555-0152")
    send_queued(webhook, env, "8200001")
    assert len(acs.texts(env.id)) == 1
    assert post_events([inbound("stop", phone, at=NOW + timedelta(minutes=1))]).status_code == 200
    start_clock(webhook, clock, START - timedelta(hours=24))
    run_timer()
    reminder = items(webhook, env, "8200001")["reminder-1440|1"]
    assert (reminder.state, reminder.reason) == ("blocked", "the recipient opted out (STOP) of texts from this number")
    assert len(acs.texts(env.id)) == 1
    # An older STOP delivered late changes nothing; START lifts the opt-out for the next reminder.
    assert post_events([inbound("UNSTOP", phone, at=NOW + timedelta(minutes=2))]).status_code == 200
    assert post_events([inbound("STOP", phone, at=NOW + timedelta(seconds=30))]).status_code == 200
    start_clock(webhook, clock, START - timedelta(hours=1))
    run_timer()
    assert items(webhook, env, "8200001")["reminder-60|1"].state == "sent"
    assert len(acs.texts(env.id)) == 2
    assert "5550152" not in caplog.text


OPT_OUT_WORDS = ["STOPALL", "Unsubscribe", "cancel", "END", "quit", "REVOKE", "opt out", "OPTOUT"]


@pytest.mark.parametrize("word", OPT_OUT_WORDS)
def test_every_standard_opt_out_word_opts_out(webhook, word):
    phone = f"+1201555014{OPT_OUT_WORDS.index(word)}"
    post_events([inbound(word, phone, at=NOW + timedelta(seconds=1))])
    assert webhook.opt_outs.is_opted_out(SENDER, phone)
    post_events([inbound("START", phone, at=NOW + timedelta(seconds=2))])
    assert not webhook.opt_outs.is_opted_out(SENDER, phone)


def test_opt_out_store_keeps_no_phone_number(webhook):
    post_events([inbound("STOP", "+12015550153", at=NOW)])
    container = webhook.store.container("opt_outs")
    doc_id = "optout|" + webhook.opt_outs.pair_hash(SENDER, "+12015550153")
    doc = container.read_item(doc_id, partition_key=doc_id)
    assert "5550153" not in json.dumps(doc)
    assert (doc["opted_out"], doc["keyword"]) == (True, "STOP")


def help_replies(acs, to: str) -> list[dict]:
    import requests

    messages = requests.get(f"{acs.url}/_standin/messages", verify=acs.verify, timeout=10).json()
    return [m for m in messages if m["to"] == to and (m.get("tag") or "").endswith("|help")]


def test_help_is_answered_once_a_day_with_the_help_text(webhook, clock, acs, environment_id):
    ours = "+12015550154"  # an environment's own sender: HELP is answered with its name
    make_environment(webhook, environment_id, sms=SmsSettings(enabled=True, sender=ours))
    start_clock(webhook, clock, NOW)
    before = len(help_replies(acs, "+12015550155"))
    for _ in range(2):
        assert post_events([inbound("HELP", "+12015550155", ours=ours)]).status_code == 200
    replies = help_replies(acs, "+12015550155")[before:]
    assert [(r["from"], r["message"]) for r in replies] == [(
        ours,
        "Contoso Health video visit notices: up to 4 msgs per visit. Help: "
        f"{webhook.settings.public_base_url}. Msg&data rates may apply. Reply STOP to opt out.",
    )]
    start_clock(webhook, clock, NOW + timedelta(days=1))
    post_events([inbound("info", "+12015550155", ours=ours)])
    assert len(help_replies(acs, "+12015550155")[before:]) == 2


# ---- delivery reports ------------------------------------------------------------------------------


def test_delivery_report_updates_the_outbox_by_message_id_and_ignores_older_reports(webhook, env, acs):
    book(env, "8200002", "(201)555-0156")
    send_queued(webhook, env, "8200002")
    item = items(webhook, env, "8200002")["booked|1"]
    assert item.state == "sent" and item.message_id
    later, earlier = NOW + timedelta(minutes=2), NOW + timedelta(minutes=1)
    from lib.observability import metrics

    failed_before = metrics.total(metrics.SMS_DELIVERY, status="Failed")
    assert post_events([delivery(item.message_id, "Delivered", at=later)]).status_code == 200
    assert post_events([delivery(item.message_id, "Failed", at=earlier)]).status_code == 200
    item = items(webhook, env, "8200002")["booked|1"]
    assert (item.state, item.delivery_status, item.delivery_event_utc) == ("sent", "Delivered", later)
    assert metrics.total(metrics.SMS_DELIVERY, status="Failed") == failed_before  # the stale report is not counted
    assert post_events([delivery(item.message_id, "Failed", at=later + timedelta(minutes=1))]).status_code == 200
    assert metrics.total(metrics.SMS_DELIVERY, status="Failed") == failed_before + 1


def test_delivery_report_reconciles_a_send_whose_outcome_was_unknown(webhook, env, clock, acs):
    to = "+12015550157"
    book(env, "8200003", "(201)555-0157")
    script_fault(acs, to, delay=1, after_send=True)  # ACS takes the text and answers after our time-out
    assert short_timeout_dispatcher(webhook, 0.5).send_one(items(webhook, env, "8200003")["booked|1"].id) == "retry"
    item = items(webhook, env, "8200003")["booked|1"]
    assert (item.state, item.maybe_accepted) == ("pending", True)
    (text,) = [t for t in acs.texts(env.id) if t["to"] == to]
    # Its delivery report (found by the tag: we never got the message ID) answers the question before the repeat.
    post_events([delivery(text["messageId"], "Delivered", at=NOW + timedelta(minutes=1), tag=item.id)])
    item = items(webhook, env, "8200003")["booked|1"]
    assert (item.state, item.message_id, item.delivery_status) == ("sent", text["messageId"], "Delivered")
    clock.set(NOW + timedelta(minutes=2))
    run_timer()
    assert len([t for t in acs.texts(env.id) if t["to"] == to]) == 1
    # An item already in review is reconciled the same way.
    book(env, "8200004", "(201)555-0157")
    review = items(webhook, env, "8200004")["booked|1"]
    webhook.repos.outbox.transition(review, state="unknown", reason="the worker sending it stopped before recording "
                                    "the outcome")
    post_events([delivery("Outgoing_late_1", "Delivered", at=NOW + timedelta(minutes=1), tag=review.id)])
    review = items(webhook, env, "8200004")["booked|1"]
    assert (review.state, review.message_id, review.delivery_status) == ("sent", "Outgoing_late_1", "Delivered")


# ---- dispatcher rules --------------------------------------------------------------------------------


def test_reschedule_sends_one_changed_text_and_moves_the_reminders(app, env, clock, acs):
    book(env, "8200004", "(201)555-0158")
    send_queued(app, env, "8200004")
    new_start = START + timedelta(days=1, hours=1)  # Fri Dec 4, 4:00 PM EST
    book(env, "8200004", "(201)555-0158", event="S13", sent=NOW + timedelta(minutes=5), start=new_start)
    start_clock(app, clock, NOW + timedelta(minutes=5))
    send_queued(app, env, "8200004")
    book(env, "8200004", "(201)555-0158", event="S14", sent=NOW + timedelta(minutes=6), start=new_start)
    send_queued(app, env, "8200004")
    texts = acs.texts(env.id)
    assert [t["message"].split(" Join here:")[0] for t in texts] == [
        "Contoso Health: your video visit is booked for Thu Dec 3, 3:00 PM EST.",
        "Contoso Health: your video visit has moved to Fri Dec 4, 4:00 PM EST.",
    ]
    by_id = items(app, env, "8200004")
    assert {k: v.state for k, v in by_id.items()} == {
        "booked|1": "sent", "reminder-1440|1": "skipped", "reminder-60|1": "skipped",
        "changed|2": "sent", "reminder-1440|2": "pending", "reminder-60|2": "pending",
    }
    assert by_id["reminder-1440|2"].due_utc == new_start - timedelta(hours=24)
    for at in (START - timedelta(hours=24), START - timedelta(hours=1), new_start - timedelta(hours=24)):
        start_clock(app, clock, at)
        run_timer()
    texts = acs.texts(env.id)
    assert len(texts) == 3
    assert texts[2]["message"].startswith("Contoso Health: reminder of your video visit Fri Dec 4, 4:00 PM EST. ")


@pytest.mark.parametrize(
    "pid15", ["SPA", "es-US", "ES-MX", "Spanish", "SPANISH", "Español", "^^^^Spanish", "10^Spanish"])
def test_spanish_text_is_chosen_by_pid15(app, env, acs, pid15):
    book(env, "8200005", "(201)555-0159", language=pid15)
    send_queued(app, env, "8200005")
    [text] = acs.texts(env.id)
    assert text["message"].startswith("Contoso Health: su visita por video es el jue 3 dic, 15:00 EST. Enlace: ")
    assert text["message"].endswith(" Responda STOP para no recibir mensajes.")
    assert app.repos.appointments.get(appointment_key(env.id, "8200005")).language == "es"


@pytest.mark.parametrize("pid13", ["(201)555-0151 x12", "+1 201 555 0151;ext=12", "^PRS^CP^^1^201^5550151^12"])
def test_a_number_with_an_extension_is_not_texted_and_the_reason_is_kept(app, env, acs, pid13):
    response = book(env, "8200016", pid13)
    assert msa(response)[1] == "AA"
    key = appointment_key(env.id, "8200016")
    assert app.repos.appointments.get(key).sms_phone_reason == "no SMS number: the number has an extension"
    assert app.repos.contacts.phone(key, now=NOW) is None
    assert items(app, env, "8200016") == {}
    assert acs.texts(env.id) == []


def test_a_visit_moved_before_its_booking_text_went_out_is_texted_once_as_a_booking_at_its_final_time(
        app, env, acs):
    for n, event in enumerate(["S12", "S14", "S14", "S14"]):  # rebooked three times within a few seconds
        book(env, "8200018", "(201)555-0163", event=event, sent=NOW + timedelta(seconds=n),
             start=START + timedelta(hours=n))
    for _ in range(2):  # the queue delivers each message at least once
        send_queued(app, env, "8200018")
    [text] = acs.texts(env.id)
    assert text["message"].startswith("Contoso Health: your video visit is booked for Thu Dec 3, 6:00 PM EST. Join ")
    states = {k: v.state for k, v in items(app, env, "8200018").items()}
    assert (states["booked|1"], states["changed|2"], states["changed|3"]) == ("skipped",) * 3
    assert {k: v for k, v in states.items() if v != "skipped"} == {
        "changed|4": "sent", "reminder-1440|4": "pending", "reminder-60|4": "pending"}
    # Once the patient knows the visit, a later change is worded as a move.
    book(env, "8200018", "(201)555-0163", event="S14", sent=NOW + timedelta(seconds=9), start=START)
    send_queued(app, env, "8200018")
    last = acs.texts(env.id)[-1]["message"]
    assert last.startswith("Contoso Health: your video visit has moved to Thu Dec 3, 3:00 PM")
    assert len(acs.texts(env.id)) == 2


def test_without_booking_texts_a_change_keeps_its_wording(app, clock, acs, environment_id):
    env = make_environment(app, environment_id, sms=SmsSettings(enabled=True, sender=SENDER, confirm_booked=False))
    start_clock(app, clock, NOW)
    for n, event in enumerate(["S12", "S14"]):  # the hospital tells patients of bookings itself (MyChart)
        book(env, "8200019", "(201)555-0164", event=event, sent=NOW + timedelta(seconds=n),
             start=START + timedelta(hours=n))
    send_queued(app, env, "8200019")
    [text] = acs.texts(env.id)
    assert text["message"].startswith("Contoso Health: your video visit has moved to Thu Dec 3, 4:00 PM EST. ")


def test_an_unknown_pid15_language_gets_the_default_language_and_a_log_line(app, env, acs, caplog):
    caplog.set_level(logging.INFO)
    book(env, "8200015", "(201)555-0159", language="KLI^Klingonese")
    send_queued(app, env, "8200015")
    [text] = acs.texts(env.id)
    assert text["message"].startswith("Contoso Health: your video visit is booked for Thu Dec 3, 3:00 PM EST. ")
    [line] = [r.getMessage() for r in caplog.records if "PID-15" in r.getMessage()]
    assert line.startswith("hl7 PID-15 not understood: component 1 'KLI', component 2 a text of 10 characters: "
                           f"texts use the default language env={env.id} msh10=")
    assert "Klingonese" not in caplog.text and "5550159" not in caplog.text


def test_catch_up_inside_quiet_hours_waits_for_morning_and_never_texts_after_the_start(app, env, clock, acs):
    book(env, "8200006", "(201)555-0161", start=datetime(2026, 12, 3, 14, 0, tzinfo=UTC))  # Thu 9:00 AM EST
    book(env, "8200007", "(201)555-0162", start=datetime(2026, 12, 2, 17, 0, tzinfo=UTC))  # Wed 12:00 PM EST
    send_queued(app, env, "8200006")
    send_queued(app, env, "8200007")
    # The timer is down from before any reminder was due until 23:00 EST on Wed Dec 2.
    clock.set(datetime(2026, 12, 3, 4, 0, tzinfo=UTC))
    run_timer()
    a = items(app, env, "8200006")
    assert (a["reminder-1440|1"].state, a["reminder-1440|1"].reason) == ("pending", "deferred: quiet hours")
    assert a["reminder-1440|1"].due_utc == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert a["reminder-60|1"].due_utc == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)  # 08:00 EST: allowed as planned
    b = items(app, env, "8200007")
    assert {k: (v.state, v.reason) for k, v in b.items() if k.startswith("reminder")} == {
        "reminder-1440|1": ("skipped", "appointment has already started"),
        "reminder-60|1": ("skipped", "appointment has already started"),
    }
    clock.set(datetime(2026, 12, 3, 13, 0, tzinfo=UTC))
    run_timer()
    assert [i.state for i in items(app, env, "8200006").values()] == ["sent", "sent", "sent"]
    reminders = [t for t in acs.texts(env.id) if "reminder" in t["message"]]
    assert [t["to"] for t in reminders] == ["+12015550161", "+12015550161"]


def test_sender_rate_limit_spreads_sends_over_minutes(app, clock, acs, environment_id):
    sms = SmsSettings(enabled=True, sender="+12015550190", rate_per_minute=2, confirm_booked=False,
                      reminder_offsets_minutes=(60,))
    env = make_environment(app, environment_id, sms=sms)
    start_clock(app, clock, NOW)
    for n in range(5):
        book(env, f"82001{n}", f"(201)555-017{n}")
    start_clock(app, clock, START - timedelta(minutes=60))
    run_timer()
    assert len(acs.texts(env.id)) == 2
    clock.set(START - timedelta(minutes=59))
    run_timer()
    assert len(acs.texts(env.id)) == 4
    clock.set(START - timedelta(minutes=58))
    run_timer()
    assert len(acs.texts(env.id)) == 5
    assert len({t["tag"] for t in acs.texts(env.id)}) == 5


def test_a_number_that_is_not_e164_is_never_texted(app, env, acs):
    book(env, "8200008", "(201)555-0163")
    key = appointment_key(env.id, "8200008")
    app.repos.contacts.put(key, env.id, "2015550163", delete_after=START + timedelta(hours=3), now=NOW)
    send_queued(app, env, "8200008")
    item = items(app, env, "8200008")["booked|1"]
    assert (item.state, item.reason) == ("skipped", "the number on file is not in E.164 format")
    assert acs.texts(env.id) == []


def test_a_send_left_in_sending_by_a_crash_goes_to_review_not_out_again(app, env, clock, acs):
    book(env, "8200009", "(201)555-0164")
    item = items(app, env, "8200009")["booked|1"]
    app.repos.outbox.transition(item, state="sending", attempts=1, claimed_utc=NOW)  # then the worker died
    start_clock(app, clock, NOW + timedelta(minutes=6))
    run_timer()
    item = items(app, env, "8200009")["booked|1"]
    assert (item.state, item.reason) == ("unknown", "the worker sending it stopped before recording the outcome")
    assert acs.texts(env.id) == []



def test_a_text_that_cannot_be_composed_is_failed_with_its_cause_and_never_sent(app, env, acs, monkeypatch):
    import struct

    from lib.sms.links import JoinLinks

    def unbounded(self, link_id, expires):  # the encoder before expiries were bounded: a year-2200 visit
        return struct.pack(">I", int(expires.timestamp()) + 2**32)

    monkeypatch.setattr(JoinLinks, "token", unbounded)
    book(env, "8200010", "(201)555-0192")
    send_queued(app, env, "8200010")
    item = items(app, env, "8200010")["booked|1"]
    assert item.state == "failed"
    assert item.reason.startswith("the text could not be composed, nothing was sent: struct.error: ")
    assert acs.texts(env.id) == []
    send_queued(app, env, "8200010")  # the queue message coming back changes nothing
    assert items(app, env, "8200010")["booked|1"].state == "failed"

# ---- scripted ACS faults -----------------------------------------------------------------------------


def test_scripted_faults_give_exactly_the_outcome_the_rules_say(app, clock, acs, environment_id, service_settings):
    import requests

    sms = SmsSettings(enabled=True, sender=SENDER, confirm_booked=False, reminder_offsets_minutes=(60,))
    env = make_environment(app, environment_id, sms=sms)
    start_clock(app, clock, NOW)
    script = {
        # recipient: (faults in order, expected state, attempts, accepted texts)
        "+12015550181": ([{"status": 429, "retry_after": 20}], "sent", 2, 1),
        # ACS took the text, then a gateway answered 500: the retry repeats the same request and ACS answers
        # the first result: one text, not two (the SDK alone would make a new request ID and text twice).
        "+12015550182": ([{"status": 500, "after_send": True}, {"status": 503}], "sent", 3, 1),
        # Five 5xx: any of them may have come after ACS sent the text, so it goes to review, never "failed".
        "+12015550183": ([{"status": 500}] * 5, "unknown", 5, 0),
        "+12015550184": ([{"httpStatusCode": 400, "errorMessage": "Invalid To phone number format."}],
                         "failed", 1, 0),
        "+12015550185": ([{"httpStatusCode": 403, "errorMessage": "Sender blocked for given recipient"}],
                         "blocked", 1, 0),
        # ACS took the text and answered after our 10 s read time-out: the repeat gets the first result.
        "+12015550186": ([{"delay": 12, "after_send": True}], "sent", 2, 1),
        "+12015550187": ([{"httpStatusCode": 400, "errorMessage": "Unverified toll-free number limits reached"}],
                         "failed", 1, 0),
        "+12015550188": ([], "sent", 1, 1),
    }
    for n, (to, (faults, *_)) in enumerate(script.items()):
        book(env, f"83000{n}", to)
        for fault in faults:
            requests.post(f"{acs.url}/_standin/recipient-faults", json={"to": to, "times": 1, **fault},
                          verify=acs.verify, timeout=10).raise_for_status()
    due = START - timedelta(minutes=60)
    start_clock(app, clock, due)
    for minute in range(20):
        clock.set(due + timedelta(minutes=minute))
        run_timer()
    accepted = acs.texts(env.id)
    for n, (to, (_faults, state, attempts, texts)) in enumerate(script.items()):
        item = items(app, env, f"83000{n}")["reminder-60|1"]
        assert (to, item.state, item.attempts) == (to, state, attempts), item.reason
        if texts is not None:
            assert len([t for t in accepted if t["to"] == to]) == texts
        assert to[2:] not in (item.reason or "")
    assert items(app, env, "830002")["reminder-60|1"].reason.startswith(
        "gave up after 5 attempts, ACS may have sent it: ACS answered HTTP 500"
    )
    assert items(app, env, "830004")["reminder-60|1"].reason == (
        "ACS refused the recipient (403): Sender blocked for given recipient"
    )


def test_a_5xx_retry_after_acs_forgot_the_request_goes_to_review_not_out_again(app, clock, acs, environment_id):
    import requests

    sms = SmsSettings(enabled=True, sender=SENDER, confirm_booked=False, reminder_offsets_minutes=(60,))
    env = make_environment(app, environment_id, sms=sms)
    to = "+12015550189"
    start_clock(app, clock, NOW)
    book(env, "830100", to)
    requests.post(f"{acs.url}/_standin/recipient-faults", json={"to": to, "times": 1, "status": 500,
                  "after_send": True}, verify=acs.verify, timeout=10).raise_for_status()
    due = START - timedelta(minutes=60)
    start_clock(app, clock, due)
    run_timer()
    item = items(app, env, "830100")["reminder-60|1"]
    assert (item.state, item.maybe_accepted) == ("pending", True)
    # The timer was down: by the next run ACS's 5-minute tracking window of that request has passed.
    app.repos.outbox.transition(item, repeat_first_sent=item.repeat_first_sent - timedelta(minutes=6))
    clock.set(due + timedelta(minutes=10))
    run_timer()
    item = items(app, env, "830100")["reminder-60|1"]
    assert (item.state, item.attempts) == ("unknown", 1)
    assert item.reason.startswith("ACS may have sent the text (5xx or no answer) and no longer tracks that attempt")
    assert len([t for t in acs.texts(env.id) if t["to"] == to]) == 1


def short_timeout_dispatcher(app, seconds: float):
    """The app's dispatcher with an ACS client whose read time-out is ``seconds`` (10 s in the app), so a
    time-out costs the test half a second."""
    from lib.sms.dispatcher import Dispatcher
    from lib.sms.sender import AcsSmsSender

    sender = AcsSmsSender(connection_string=app.settings.acs_connection_string, verify=app.settings.tls_verify,
                          timeout=seconds)
    r = app.repos
    return Dispatcher(outbox=r.outbox, appointments=r.appointments, contacts=r.contacts,
                      environments=r.environments, sender=sender, links=app.join_links,
                      public_base_url=app.settings.public_base_url, clock=app.clock, opt_outs=app.opt_outs,
                      messages=app.sms_messages, rate_limiter=app.sender_rate)


def script_fault(acs, to: str, **fault) -> None:
    import requests

    requests.post(f"{acs.url}/_standin/recipient-faults", json={"to": to, "times": 1, **fault}, verify=acs.verify,
                  timeout=10).raise_for_status()


@pytest.mark.parametrize("acs_sent_it", [False, True], ids=["gateway-hung-nothing-sent", "acs-sent-answer-late"])
def test_a_timed_out_send_is_repeated_with_the_same_request_and_texts_exactly_once(app, clock, acs, environment_id,
                                                                                     acs_sent_it):
    env = make_environment(app, environment_id)
    start_clock(app, clock, NOW)
    to, csn = ("+12015550174", "831001") if acs_sent_it else ("+12015550173", "831000")
    book(env, csn, to)
    if acs_sent_it:  # ACS accepts the text, then answers after our read time-out
        script_fault(acs, to, delay=1.5, after_send=True)
    else:  # the gateway holds the request, then fails it: nothing was sent
        script_fault(acs, to, delay=1.5, status=503)
    dispatcher = short_timeout_dispatcher(app, 0.5)
    item_id = items(app, env, csn)["booked|1"].id
    assert dispatcher.send_one(item_id) == "retry"
    first = items(app, env, csn)["booked|1"]
    assert (first.state, first.maybe_accepted, first.attempts) == ("pending", True, 1)
    assert first.reason == "no answer from ACS: ServiceResponseTimeoutError"
    assert first.due_utc == NOW + timedelta(seconds=30)  # within ACS's 5-minute tracking window
    time.sleep(1.5)  # the first request ends at ACS (the stand-in), as it would while we wait
    clock.set(NOW + timedelta(seconds=30))
    assert dispatcher.run_due().outcomes == {"sent": 1}
    item = items(app, env, csn)["booked|1"]
    assert (item.state, item.attempts, item.repeat_id, item.repeat_first_sent) == (
        "sent", 2, first.repeat_id, first.repeat_first_sent)
    texts = [t for t in acs.texts(env.id) if t["to"] == to]
    assert len(texts) == 1 and texts[0]["repeatabilityRequestId"] == first.repeat_id
    assert item.message_id == texts[0]["messageId"]  # the first result, answered again


def test_a_timed_out_send_goes_to_review_once_acs_forgot_the_request(app, clock, acs, environment_id, capsys):
    env = make_environment(app, environment_id)
    start_clock(app, clock, NOW)
    to = "+12015550175"
    book(env, "831002", to)
    script_fault(acs, to, delay=1, status=503)
    dispatcher = short_timeout_dispatcher(app, 0.5)
    item = items(app, env, "831002")["booked|1"]
    assert dispatcher.send_one(item.id) == "retry"
    # The timer was down: by the next run ACS's tracking window of that request has passed.
    item = items(app, env, "831002")["booked|1"]
    app.repos.outbox.transition(item, repeat_first_sent=item.repeat_first_sent - timedelta(minutes=6))
    clock.set(NOW + timedelta(minutes=10))
    assert dispatcher.run_due().outcomes == {"unknown": 1}
    item = items(app, env, "831002")["booked|1"]
    assert (item.state, item.attempts) == ("unknown", 1)
    assert item.reason == "ACS may have sent the text (5xx or no answer) and no longer tracks that attempt: not resent"
    assert [t for t in acs.texts(env.id) if t["to"] == to] == []
    # The operator finds it (no number), checks ACS's logs, and asks for it to be sent.
    from local import ops

    assert ops.run(["sms", "review", "list", "--env", env.id], services=app) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["textId"], t["kind"], t["state"], t["appointmentId"], t["recipientLast2"]) for t in listed] == [
        (item.id, "booked", "unknown", "831002", "75")]
    assert "5550175" not in json.dumps(listed)
    assert ops.run(["sms", "review", "resolve", "--text", item.id, "--as", "resend"], services=app) == 0
    assert json.loads(capsys.readouterr().out) == {"textId": item.id, "outcome": "requeued"}
    assert ops.run(["sms", "review", "resolve", "--text", item.id, "--as", "resend"], services=app) == 1
    assert json.loads(capsys.readouterr().out) == {"textId": item.id, "outcome": "not-unknown:pending"}
    assert dispatcher.run_due().outcomes == {"sent": 1}
    item = items(app, env, "831002")["booked|1"]
    assert (item.state, item.attempts) == ("sent", 2) and item.repeat_id != listed[0]["repeatabilityRequestId"]
    assert len([t for t in acs.texts(env.id) if t["to"] == to]) == 1
    assert ops.run(["sms", "review", "list", "--env", env.id], services=app) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_acs_answers_409_to_a_repeat_while_the_first_request_is_in_progress(app, acs):
    from lib.sms.repeatability import Repeatability
    from lib.sms.sender import AcsSmsSender

    sender = AcsSmsSender(connection_string=app.settings.acs_connection_string, verify=app.settings.tls_verify,
                          timeout=0.5)
    to = "+12015550176"
    script_fault(acs, to, delay=2, status=503)
    repeat = Repeatability(str(uuid.uuid4()), datetime.now(UTC).replace(microsecond=0))
    prefix = f"t409-{uuid.uuid4().hex[:6]}"
    tag = f"{prefix}|x|booked|1"
    send = {"sender": SENDER, "to": to, "message": "Contoso: visit at 3 PM. Reply STOP to opt out.", "tag": tag,
            "repeat": repeat}
    timed_out = sender.send(**send)
    assert (timed_out.status, timed_out.maybe_accepted) == ("retry", True)
    in_progress = sender.send(**send)  # the first request is still held by the gateway
    assert (in_progress.status, in_progress.maybe_accepted, in_progress.reason) == (
        "retry", True, "ACS is still handling the first attempt (409): The original request is still in progress.")
    time.sleep(2)
    done = sender.send(**send)  # the first ended in a 503: ACS executes the repeat, once
    assert done.status == "sent"
    again = sender.send(**send)
    assert (again.status, again.message_id) == ("sent", done.message_id)
    assert len(acs.texts(prefix)) == 1


def test_acs_refuses_a_repeat_outside_its_window_and_the_sender_calls_it_unknown(app, acs):
    from lib.sms.repeatability import Repeatability

    old = Repeatability(str(uuid.uuid4()), datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=6))
    result = app.sms_sender.send(sender=SENDER, to="+12015550189", message="x", tag="t|x", repeat=old)
    assert (result.status, result.reason) == (
        "unknown", "ACS no longer tracks the first attempt (412): Repeatability first sent header not within the "
        "tracking window.")


# ---- settings applied before the next send; checked again before sending ------------------------------


def test_sms_switched_off_by_another_instance_stops_the_next_send(app, env, clock, acs):
    from lib.store.environments import EnvironmentRepository

    book(env, "830200", "(201)555-0148")
    start_clock(app, clock, START - timedelta(hours=24))
    run_timer()  # the 24-hour reminder goes out; this process has the environment in its cache now
    assert len(acs.texts(env.id)) == 1
    portal = EnvironmentRepository(app.store)  # the admin portal, in another instance
    portal.put(dataclasses.replace(env, sms=dataclasses.replace(env.sms, enabled=False)))
    clock.set(START - timedelta(hours=1))
    run_timer()
    item = items(app, env, "830200")["reminder-60|1"]
    assert (item.state, item.reason) == ("skipped", "SMS is not enabled for this environment")
    assert len(acs.texts(env.id)) == 1


def test_a_stored_template_over_its_segment_budget_is_never_sent(app, clock, acs, environment_id):
    long = "{org}: your video visit is {when}. Join: {link} " + "Please read all of this. " * 14
    sms = SmsSettings(enabled=True, sender=SENDER, confirm_booked=False, reminder_offsets_minutes=(60,),
                      templates={"en": {"reminder": long}})
    env = make_environment(app, environment_id, sms=sms)  # stored without the portal's check
    start_clock(app, clock, NOW)
    book(env, "830300", "(201)555-0149")
    start_clock(app, clock, START - timedelta(minutes=60))
    run_timer()
    item = items(app, env, "830300")["reminder-60|1"]
    assert item.state == "failed"
    assert item.reason.startswith("the text would take 4 segments, more than 2")
    assert acs.texts(env.id) == []


def test_settings_with_a_broken_template_fail_the_send_with_the_reason(app, clock, acs, environment_id):
    sms = SmsSettings(enabled=True, sender=SENDER, confirm_booked=False, reminder_offsets_minutes=(60,),
                      templates={"en": {"reminder": "{org} {when} {link} {patient_name}"}})
    env = make_environment(app, environment_id, sms=sms)
    start_clock(app, clock, NOW)
    book(env, "830400", "(201)555-0150")
    start_clock(app, clock, START - timedelta(minutes=60))
    run_timer()
    item = items(app, env, "830400")["reminder-60|1"]
    assert (item.state, item.reason) == (
        "failed", "the SMS settings are invalid: en/reminder: unknown placeholder(s) {patient_name}; use {contact}, "
        "{frequency}, {link}, {org}, {when}")
    assert acs.texts(env.id) == []


@pytest.mark.parametrize(("countries", "state", "reason"), [
    ((), "skipped", "the sender number cannot text numbers in GB (reaches US)"),
    (("US", "CA"), "skipped", "the sender number cannot text numbers in GB (reaches CA, US)"),
    (("US", "GB"), "sent", None),
])
def test_a_uk_mobile_is_texted_only_when_the_sender_reaches_the_uk(app, clock, acs, environment_id, countries,
                                                                     state, reason):
    sms = SmsSettings(enabled=True, sender=SENDER, confirm_booked=False, reminder_offsets_minutes=(60,),
                      reachable_countries=countries)
    env = make_environment(app, environment_id, sms=sms)
    start_clock(app, clock, NOW)
    book(env, "830500", UK_MOBILE)
    start_clock(app, clock, START - timedelta(minutes=60))
    run_timer()
    item = items(app, env, "830500")["reminder-60|1"]
    assert (item.state, item.reason) == (state, reason)
    assert len(acs.texts(env.id)) == (1 if state == "sent" else 0)


# ---- Failed and blocked numbers, free-text opt-outs, history, HELP, per-number cap -----------------------


def test_a_failed_delivery_report_stops_further_texts_to_that_number(webhook, env, clock, acs):
    phone = "+12015550176"
    book(env, "830600", "(201)555-0176")
    send_queued(webhook, env, "830600")
    item = items(webhook, env, "830600")["booked|1"]
    report = delivery(item.message_id, "Failed", at=NOW + timedelta(minutes=1), detail="Number out of service")
    report["data"]["to"] = phone
    assert post_events([report]).status_code == 200
    start_clock(webhook, clock, START - timedelta(hours=24))
    run_timer()
    reminder = items(webhook, env, "830600")["reminder-1440|1"]
    assert (reminder.state, reminder.reason) == (
        "blocked", "an earlier text to this number was not delivered (Number out of service): no more texts")
    assert len(acs.texts(env.id)) == 1
    # The number answers START: it takes texts again (the carrier lifted its block too).
    assert post_events([inbound("START", phone, at=NOW + timedelta(minutes=5))]).status_code == 200
    assert webhook.opt_outs.stop_reason(SENDER, phone) is None


def test_acs_blocked_answer_records_an_opt_out_in_the_history(app, clock, acs, environment_id):
    phone = "+12015550177"
    sms = SmsSettings(enabled=True, sender=SENDER, reminder_offsets_minutes=(60,))
    env = make_environment(app, environment_id, sms=sms)
    start_clock(app, clock, NOW)
    acs.fail_recipient(phone, 403, "Sender blocked for given recipient")
    book(env, "830700", "(201)555-0177")
    send_queued(app, env, "830700")
    assert items(app, env, "830700")["booked|1"].state == "blocked"
    assert app.opt_outs.history(SENDER, phone) == [
        {"event_time": "2026-11-29T17:00:00+00:00", "opted_out": True, "keyword": "ACS-BLOCKED"}]
    acs.clear_faults()
    start_clock(app, clock, START - timedelta(minutes=60))
    run_timer()
    reminder = items(app, env, "830700")["reminder-60|1"]
    assert (reminder.state, reminder.reason) == ("blocked", "the recipient opted out (STOP) of texts from this number")
    assert acs.texts(env.id) == []


@pytest.mark.parametrize(("text", "phone"), [
    ("please stop texting me", "+12015550178"), ("Remove me", "+12015550179"),
    ("ＳＴＯＰ", "+12015550180"), ("\u0405\u0422\u041e\u0420", "+12015550181"),
    # a lone STOP anywhere in a short text, the Canadian French ARRÊT, a Spanish free-text opt-out
    ("Please stop", "+12015550185"), ("I want to stop.", "+12015550186"), ("Arrêt", "+12015550187"),
    ("No más mensajes por favor", "+12015550188"),
])
def test_free_text_full_width_and_look_alike_opt_outs_are_honoured(webhook, text, phone):
    assert post_events([inbound(text, phone)]).status_code == 200
    assert webhook.opt_outs.stop_reason(SENDER, phone) == "the recipient opted out (STOP) of texts from this number"


def test_a_text_asking_to_keep_the_reminders_does_not_opt_out(webhook):
    assert post_events([inbound("Please don't stop my reminders", "+12015550189")]).status_code == 200
    assert webhook.opt_outs.stop_reason(SENDER, "+12015550189") is None


def test_opt_out_and_opt_in_history_is_kept_not_overwritten(webhook):
    phone = "+12015550182"
    events = [inbound("STOP", phone, at=NOW), inbound("START", phone, at=NOW + timedelta(hours=1)),
              inbound("remove me", phone, at=NOW + timedelta(hours=2))]
    for event in [*events, events[1]]:  # Event Grid delivers one event twice
        assert post_events([event]).status_code == 200
    assert webhook.opt_outs.history(SENDER, phone) == [
        {"event_time": "2026-11-29T17:00:00+00:00", "opted_out": True, "keyword": "STOP"},
        {"event_time": "2026-11-29T18:00:00+00:00", "opted_out": False, "keyword": "START"},
        {"event_time": "2026-11-29T19:00:00+00:00", "opted_out": True, "keyword": "REMOVE"},
    ]
    stored = json.dumps(webhook.store.container("opt_outs").read_item(
        f"optout|{webhook.opt_outs.pair_hash(SENDER, phone)}", f"optout|{webhook.opt_outs.pair_hash(SENDER, phone)}"))
    assert "2015550182" not in stored and "remove me" not in stored.lower()


@pytest.mark.parametrize(("asked", "answer"), [
    ("HELP", "Contoso Health video visit notices: up to 4 msgs per visit. Help: call 800-555-0199. Msg&data rates "
             "may apply. Reply STOP to opt out."),
    ("Ayuda por favor", "Contoso Health avisos de visitas por video: hasta 4 mensajes por visita. Ayuda: call "
                        "800-555-0199. Pueden aplicar tarifas de mensajes y datos. Responda STOP para no recibir "
                        "mensajes."),  # AYUDA: the Spanish help text
])
def test_help_answers_with_programme_frequency_and_contact_in_the_patients_language(
        webhook, clock, acs, environment_id, asked, answer):
    sms = SmsSettings(enabled=True, sender="+12015550157", help_contact="call 800-555-0199")
    make_environment(webhook, environment_id, sms=sms)
    clock.set(NOW)
    before = len(help_replies(acs, "+12015550158"))
    assert post_events([inbound(asked, "+12015550158", ours="+12015550157")]).status_code == 200
    texts = help_replies(acs, "+12015550158")[before:]
    assert [t["message"] for t in texts] == [answer]


def test_the_per_number_cap_holds_over_a_rolling_window(app, clock, acs, environment_id):
    phone = "(201)555-0183"
    sms = SmsSettings(enabled=True, sender=SENDER, reminder_offsets_minutes=(60,), per_number_cap=3,
                      per_number_window_hours=72)
    env = make_environment(app, environment_id, sms=sms)
    booked_at = START - timedelta(days=1)
    start_clock(app, clock, booked_at)
    for n, start in enumerate((START, START + timedelta(hours=2))):  # two visits the same afternoon
        book(env, f"83080{n}", phone, start=start, sent=booked_at)
        send_queued(app, env, f"83080{n}")
    for at in (START - timedelta(minutes=60), START + timedelta(minutes=60)):
        clock.set(at)
        run_timer()
    states = {n: {k: (i.state, i.reason) for k, i in items(app, env, f"83080{n}").items()} for n in (0, 1)}
    assert states[0] == {"booked|1": ("sent", None), "reminder-60|1": ("sent", None)}
    assert states[1] == {"booked|1": ("sent", None), "reminder-60|1": (
        "skipped", "this number already got 3 texts in 72 hours (per-number cap)")}
    # Days later the window has moved on: the next visit's texts go out again.
    later = START + timedelta(days=5)
    clock.set(later - timedelta(days=1))
    book(env, "830802", phone, start=later, sent=later - timedelta(days=1))
    send_queued(app, env, "830802")
    assert items(app, env, "830802")["booked|1"].state == "sent"
    assert len(acs.texts(env.id)) == 4


def test_the_cap_never_drops_a_change_notice_and_reminders_give_way(app, clock, acs, environment_id, capsys):
    """A busy scheduler moves one visit four times and books a second one for the same number: every change
    notice reaches the patient (the last one names the time that holds); the cap takes reminders instead."""
    from lib.observability import metrics

    phone, to = "(201)555-0172", "+12015550172"
    sms = SmsSettings(enabled=True, sender=SENDER, reminder_offsets_minutes=(60,), per_number_cap=6,
                      per_number_window_hours=72)
    env = make_environment(app, environment_id, sms=sms)
    booked_at = START - timedelta(days=1)  # all within one 72-hour window
    start_clock(app, clock, booked_at)
    starts = [START + timedelta(hours=h) for h in (0, 1, 2, 3, 4)]
    book(env, "830900", phone, start=starts[0], sent=booked_at)
    send_queued(app, env, "830900")
    book(env, "830901", phone, start=START + timedelta(days=1), sent=booked_at + timedelta(minutes=1))
    send_queued(app, env, "830901")
    book(env, "830901", phone, event="S14", start=START + timedelta(days=1, hours=1),
         sent=booked_at + timedelta(minutes=2))
    send_queued(app, env, "830901")
    before = metrics.total(metrics.SMS_MESSAGES, outcome="capped")
    for n, start in enumerate(starts[1:], start=1):  # four moves of the first visit: texts 4 to 7 to the number
        book(env, "830900", phone, event="S14", start=start, sent=booked_at + timedelta(minutes=2 + n))
        send_queued(app, env, "830900")
    first = items(app, env, "830900")
    assert {k: i.state for k, i in first.items() if k.startswith("changed")} == {
        "changed|2": "sent", "changed|3": "sent", "changed|4": "sent", "changed|5": "sent"}
    texts = [t for t in acs.texts(env.id) if t["to"] == to]
    assert len(texts) == 7
    assert texts[-1]["message"].startswith(f"{env.display_name}: your video visit has moved to ")
    assert "7:00 PM" in texts[-1]["message"]  # the time that holds (3:00 PM EST + 4 h)
    # The reminders of both visits are over the cap now: skipped with the reason, and counted.
    for at in (starts[-1] - timedelta(minutes=60), START + timedelta(days=1, minutes=0)):
        clock.set(at)
        run_timer()
    reminders = {csn: items(app, env, csn)[key] for csn, key in (("830900", "reminder-60|5"),
                                                                 ("830901", "reminder-60|2"))}
    for item in reminders.values():
        assert (item.state, item.reason) == ("skipped", "this number already got 6 texts in 72 hours (per-number cap)")
    assert metrics.total(metrics.SMS_MESSAGES, outcome="capped") - before == 2
    assert len([t for t in acs.texts(env.id) if t["to"] == to]) == 7
    from local import ops  # an operator sees what the cap held back

    assert ops.run(["sms", "review", "list", "--env", env.id, "--capped"], services=app) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted((t["appointmentId"], t["kind"], t["state"]) for t in listed) == [
        ("830900", "reminder", "skipped"), ("830901", "reminder", "skipped")]


def test_an_event_time_ahead_of_our_clock_is_measured_as_skew(webhook):
    from lib.observability import metrics

    before = metrics.total(metrics.CLOCK_SKEW, source="eventgrid")
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    assert post_events([inbound("see you then", "+12015550184", at=ahead)]).status_code == 200
    assert 290 <= metrics.total(metrics.CLOCK_SKEW, source="eventgrid") - before <= 300


def test_a_text_whose_delivery_report_never_came_is_marked_and_counted_once(webhook, clock, acs, environment_id):
    from lib.observability import metrics

    app = webhook
    booked_at = datetime(2027, 2, 1, 14, 0, tzinfo=UTC)  # a window no other test texts in
    env = make_environment(app, environment_id)
    start_clock(app, clock, booked_at)
    book(env, "830900", "(201)555-0191", sent=booked_at, start=booked_at + timedelta(days=3))
    send_queued(app, env, "830900")
    before = metrics.total(metrics.SMS_DELIVERY, status="missing")
    for minutes, expected in ((45, None), (75, "missing"), (90, "missing")):
        clock.set(booked_at + timedelta(minutes=minutes))
        run_timer()
        assert items(app, env, "830900")["booked|1"].delivery_status == expected
    assert metrics.total(metrics.SMS_DELIVERY, status="missing") - before == 1
    item = items(app, env, "830900")["booked|1"]
    late = delivery(item.message_id, "Delivered", at=booked_at + timedelta(hours=2))
    assert post_events([late]).status_code == 200
    assert items(app, env, "830900")["booked|1"].delivery_status == "Delivered"


# ---- privacy ------------------------------------------------------------------------------------------


def test_after_the_grace_period_no_phone_number_of_the_appointment_remains(app, env, clock, acs, caplog):
    caplog.set_level(logging.DEBUG)
    digits = "2015550165"
    book(env, "8200010", "(201)555-0165")
    send_queued(app, env, "8200010")
    for at in (START - timedelta(hours=24), START - timedelta(hours=1)):
        start_clock(app, clock, at)
        run_timer()
    assert len(acs.texts(env.id)) == 3
    key = appointment_key(env.id, "8200010")
    # The grace period (120 minutes by default) after the 30-minute visit.
    start_clock(app, clock, START + timedelta(minutes=30 + 120, seconds=1))
    run_timer()
    assert app.repos.contacts.phone(key, now=app.clock.now()) is None
    found = []
    for spec in CONTAINERS:
        container = app.store.container(spec.name)
        for doc in container.query_items("SELECT * FROM c", enable_cross_partition_query=True):
            text = json.dumps(doc)
            if spec.name == "rejected" and doc.get("raw"):
                text += base64.b64decode(doc["raw"]).decode("latin-1")
            if digits in text or "555-0165" in text:
                found.append((spec.name, doc["id"]))
    assert found == []
    assert [i.state for i in items(app, env, "8200010").values()] == ["sent", "sent", "sent"]
    assert app.repos.rejected.list(env.id) == []
    assert digits not in caplog.text and "555-0165" not in caplog.text


def test_webhook_checks_the_key_before_reading_the_body(webhook):
    from functions.events import acs_events

    req = func.HttpRequest(method="POST", url="http://127.0.0.1/api/events/acs", headers={}, params={},
                           route_params={}, body=b"{")
    response = acs_events.build().get_user_function()(req)
    assert response.status_code == 401  # not 400: an unauthenticated body is never parsed
