"""Operator commands: ``python -m local.ops ...`` (``./dev ops ...``), JSON on stdout, no PHI.

The logic lives in :mod:`lib.operations`; this is the command line. It runs wherever the app's settings
are in the environment: locally after ``eval "$(python -m local.services env --profile demo)"`` (or with
``--profile demo|test``, which reads the local services' settings), in Azure from a shell with the app
settings exported (``az functionapp config appsettings list``) and an identity allowed on Cosmos DB and
the storage queues.

    hl7 rejected list    --env ID [--limit N]
    hl7 rejected show    --env ID --id REJECTED_ID
    hl7 rejected replay  --env ID --id REJECTED_ID [--trust-unauthenticated [--operator NAME]]
    hl7 log-id           (MSH-10 on stdin) how that control ID appears in this deployment's logs
    sms review list      [--env ID] [--capped]
    sms review resolve   --text TEXT_ID --as sent|resend
    writeback poison list   [--env ID]
    writeback poison replay (--event ID --appointment-key KEY | --all [--env ID])
                         (--all skips events that may already be in Epic, one line each on stderr)
    queue poison list    [--queue QUEUE] [--env ID] [--limit N]
    queue poison replay  --queue QUEUE (--message MESSAGE_ID | --all [--env ID])
                         (QUEUE: launch-followup, call-records, report-updates, sms-outbox; the write-back's
                         visit-events poison is replayed with writeback poison replay)
    visit timeline --env ID (--appointment ID | --correlation ID)
    health ready

Exit status: 0 done, 1 not found (an environment that is not configured, a visit, text, event or message that
does not exist) / not ready / replay not accepted, 2 usage or settings error (``--limit`` outside 1..1000), or
Cosmos DB or the queues unreachable. Every exit but 0 says why in one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _limit(text: str) -> int:
    """``--limit``: a whole number from 1 to 1000."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (1 to 1000)") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give 1 to 1000")
    return value


def _services(profile: str | None) -> Any:
    from functions.dependencies import Services

    if profile:
        from local import services as local_services

        return Services(local_services.settings_for(profile))
    return Services()


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def run(argv: list[str] | None = None, *, services: Any = None) -> int:
    """Parse ``argv`` and run one command; ``services`` (tests) replaces the settings-built services."""
    parser = argparse.ArgumentParser(prog="python -m local.ops", description="Operator commands (no PHI).")
    parser.add_argument("--profile", choices=["demo", "test"], help="use the local services of this profile")
    # --profile is also accepted after the command (as the README writes it): every leaf parser knows it.
    late = argparse.ArgumentParser(add_help=False)
    late.add_argument("--profile", choices=["demo", "test"], default=argparse.SUPPRESS,
                      help="use the local services of this profile")
    area = parser.add_subparsers(dest="area", required=True)

    hl7 = area.add_parser("hl7").add_subparsers(dest="what", required=True)
    rejected = hl7.add_parser("rejected", parents=[late])
    rejected.add_argument("action", choices=["list", "show", "replay"])
    rejected.add_argument("--env", required=True)
    rejected.add_argument("--id")
    rejected.add_argument("--limit", type=_limit, default=100)
    rejected.add_argument("--trust-unauthenticated", action="store_true",
                          help="replay a message sent before its environment existed even though its signature does "
                               "not verify (confirm with the sender first; written to the audit log)")
    rejected.add_argument("--operator", help="who trusts it, for the audit log (default: user@host)")
    # The control ID comes on stdin, not the command line (process lists and shell history keep arguments).
    hl7.add_parser("log-id", parents=[late], help="print how an MSH-10 read from stdin appears in the logs")

    sms = area.add_parser("sms").add_subparsers(dest="what", required=True)
    review = sms.add_parser("review", parents=[late])
    review.add_argument("action", choices=["list", "resolve"])
    review.add_argument("--env")
    review.add_argument("--capped", action="store_true", help="also list reminders skipped by the per-number cap")
    review.add_argument("--text", help="the text's ID (textId in the list)")
    review.add_argument("--as", dest="outcome", choices=["sent", "resend"])

    writeback = area.add_parser("writeback").add_subparsers(dest="what", required=True)
    poison = writeback.add_parser("poison", parents=[late])
    poison.add_argument("action", choices=["list", "replay"])
    poison.add_argument("--env")
    poison.add_argument("--event")
    poison.add_argument("--appointment-key")
    poison.add_argument("--all", action="store_true")

    from lib.operations.queue_poison import POISONED

    queue = area.add_parser("queue").add_subparsers(dest="what", required=True)
    queue_poison = queue.add_parser("poison", parents=[late])
    queue_poison.add_argument("action", choices=["list", "replay"])
    queue_poison.add_argument("--queue", choices=sorted(POISONED), help="the work queue whose poison queue to read")
    queue_poison.add_argument("--env")
    queue_poison.add_argument("--message", help="the poison message's ID (messageId in the list)")
    queue_poison.add_argument("--all", action="store_true")
    queue_poison.add_argument("--limit", type=_limit, default=100)

    visit = area.add_parser("visit").add_subparsers(dest="what", required=True)
    tl = visit.add_parser("timeline", parents=[late])
    tl.add_argument("--env", required=True)
    group = tl.add_mutually_exclusive_group(required=True)
    group.add_argument("--appointment")
    group.add_argument("--correlation")

    health = area.add_parser("health").add_subparsers(dest="what", required=True)
    health.add_parser("ready", parents=[late])

    args = parser.parse_args(argv)
    from lib.settings import SettingsError

    try:
        svc = services if services is not None else _services(args.profile)
    except SettingsError as exc:
        hint = "" if args.profile else " (locally, add --profile demo or --profile test)"
        print(f"ops: {exc}{hint}", file=sys.stderr)
        return 2
    if args.area == "health":
        return _health(svc)
    if args.area == "hl7" and args.what == "log-id":
        from lib.observability.safe_ids import log_control_id

        print(log_control_id(sys.stdin.readline().rstrip("\r\n")))  # the key was set when svc was built
        return 0
    from azure.core.exceptions import AzureError

    try:
        if getattr(args, "env", None) and not (args.area == "hl7" and args.what == "rejected"):
            unknown = _unknown_environment(svc, args.env)
            if unknown:
                print(unknown, file=sys.stderr)
                return 1
        if args.area == "hl7":
            return _hl7(svc, args, parser)
        if args.area == "writeback":
            return _writeback(svc, args, parser)
        if args.area == "sms":
            return _sms(svc, args, parser)
        if args.area == "queue":
            return _queue_poison(svc, args, parser)
        return _timeline(svc, args)
    except AzureError as exc:
        # The SDK's message can be pages long; the class says enough to act on (no PHI either way).
        where = f"the {args.profile} services: ./dev services start --profile {args.profile}" if args.profile \
            else "the app settings' endpoints and this identity's roles"
        print(f"ops: Cosmos DB or the queues did not answer or refused ({exc.__class__.__name__}); check {where}",
              file=sys.stderr)
        return 2


def _unknown_environment(svc: Any, environment_id: str) -> str | None:
    """``None`` when ``environment_id`` is configured, else the stderr line saying so (and the closest IDs)."""
    import difflib

    if svc.repos.environments.get(environment_id) is not None:
        return None
    known = sorted(e.id for e in svc.repos.environments.all())
    close = difflib.get_close_matches(environment_id, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (f"ops: no environment {environment_id} is configured ({len(known)} are); {hint}the portal's "
            "Environments page lists their IDs")


def _health(svc: Any) -> int:
    from lib.operations.health import check_readiness

    readiness = check_readiness(lambda: svc)
    _print(readiness.to_json())
    return 0 if readiness.ready else 1


def _hl7(svc: Any, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from lib.operations import rejected

    unknown = _unknown_environment(svc, args.env)
    if args.action == "list":
        listed = [r.to_json() for r in rejected.list_rejected(svc, args.env, limit=args.limit)]
        if unknown and not listed:
            print(unknown, file=sys.stderr)
            return 1
        if unknown:  # kept although the environment does not exist (yet): sent before it was configured
            print(f"ops: environment {args.env} is not configured (yet): these messages were sent to it and kept "
                  "unauthenticated (docs/hl7-intake.md)", file=sys.stderr)
        _print(listed)
        return 0
    if not args.id:
        parser.error(f"hl7 rejected {args.action} needs --id")
    if args.action == "show":
        found = rejected.show_rejected(svc, args.env, args.id)
        if found is None:
            print(unknown or f"ops: no rejected message {args.id} in environment {args.env} (already replayed, expired "
                  f"with its visit, or mistyped: list them with hl7 rejected list --env {args.env})", file=sys.stderr)
            return 1
        _print(found.to_json())
        return 0
    from lib.scheduling.replay import RejectedNotFound, ReplayNotAuthenticated

    try:
        result = rejected.replay(svc, args.env, args.id, trust_unauthenticated=args.trust_unauthenticated,
                                 operator=args.operator)
    except RejectedNotFound as exc:
        print(unknown or f"ops: {exc} (already replayed, expired with its visit, or mistyped: list them with hl7 "
              f"rejected list --env {args.env})", file=sys.stderr)
        return 1
    except ReplayNotAuthenticated as exc:
        print(f"ops: not replayed: message {args.id} was sent before environment {args.env} existed, so nothing "
              f"authenticated it, and its signature does not verify now ({exc.code}: {exc.detail}). Ask the sender "
              "to send it again (signed anew, now that the environment exists); or, once the sender confirms it is "
              "theirs, replay it with --trust-unauthenticated (recorded in the audit log).", file=sys.stderr)
        return 1
    _print(result.to_json())
    if not result.accepted:
        print(f"ops: not replayed: the intake refused message {args.id} again ({result.status} "
              f"{result.ack_code or 'problem'}: {result.reason or 'no reason given'}); it stays kept: fix that, "
              "then replay it again", file=sys.stderr)
    return 0 if result.accepted else 1


def _writeback(svc: Any, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from lib.operations import poison

    if args.action == "list":
        _print([p.to_json() for p in poison.list_poison(svc, args.env)])
        return 0
    if args.all:
        replayed = poison.replay_all(svc, args.env)
        for item in replayed:
            if item.outcome == poison.CHECK_EPIC_FIRST:  # one line each on stderr; stdout stays JSON
                print(f"ops: {poison.check_epic_first_note(item.event_id, item.appointment_key)}", file=sys.stderr)
        _print({item.event_id: item.outcome for item in replayed})
        return 0
    if not (args.event and args.appointment_key):
        parser.error("writeback poison replay needs --event and --appointment-key, or --all")
    outcome = poison.replay(svc, args.event, args.appointment_key)
    _print({"eventId": args.event, "outcome": outcome})
    if outcome == "missing":
        print(f"ops: no visit event {args.event} in visit {args.appointment_key} (check both IDs: list them with "
              "./dev ops writeback poison list)", file=sys.stderr)
    return 1 if outcome == "missing" else 0


def _queue_poison(svc: Any, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from lib.operations import queue_poison

    if args.action == "list":
        _print([m.to_json() for m in queue_poison.list_poison(svc, args.queue, args.env, limit=args.limit)])
        return 0
    if not args.queue or not (args.message or args.all) or (args.message and args.all):
        parser.error("queue poison replay needs --queue and either --message or --all")
    try:
        outcomes = queue_poison.replay(svc, args.queue, message_id=args.message, environment_id=args.env)
    except queue_poison.NotReplayable as exc:
        print(f"ops: {exc}", file=sys.stderr)
        return 1
    poison = queue_poison.POISONED[args.queue].poison
    if args.message and args.message not in outcomes:
        print(f"ops: no message {args.message} in {poison} (replayed already, deleted, or mistyped: list them with "
              f"./dev ops queue poison list --queue {args.queue})", file=sys.stderr)
        _print({args.message: "missing"})
        return 1
    for message_id, outcome in outcomes.items():
        if outcome == "malformed":
            print(f"ops: message {message_id} left in {poison}: its trigger cannot read it (the list says why); fix "
                  "its producer, then delete it", file=sys.stderr)
    _print(outcomes)
    return 1 if "malformed" in outcomes.values() else 0


def _sms(svc: Any, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from lib.operations import texts

    if args.action == "list":
        _print([t.to_json() for t in texts.list_for_review(svc, args.env, capped=args.capped)])
        return 0
    if not (args.text and args.outcome):
        parser.error("sms review resolve needs --text and --as sent|resend")
    outcome = texts.resolve(svc, args.text, args.outcome)
    _print({"textId": args.text, "outcome": outcome})
    if outcome == "missing":
        print(f"ops: no text {args.text} (mistyped, or deleted with its visit: list the texts to review with "
              "./dev ops sms review list)", file=sys.stderr)
    elif outcome.startswith("not-unknown:"):
        print(f"ops: text {args.text} is {outcome.split(':', 1)[1]}, not unknown: only a text ACS may or may not "
              "have sent is resolved; nothing changed", file=sys.stderr)
    return 0 if outcome in ("sent", "requeued") else 1


def _timeline(svc: Any, args: argparse.Namespace) -> int:
    from lib.operations.timeline import find_by_correlation, timeline

    if args.appointment:
        found = timeline(svc, args.env, args.appointment)
        if found["appointment"] is None and not found["entries"]:
            print(f"ops: no visit with appointment ID {args.appointment} in environment {args.env} (the appointment "
                  "ID is Epic's CSN, as in the HL7 message's SCH-1 and the launch URL; check both IDs)",
                  file=sys.stderr)
            return 1
        _print(found)
        return 0
    keys = find_by_correlation(svc, args.env, args.correlation)
    if not keys:
        print(f"ops: no visit event in environment {args.env} carries correlation ID {args.correlation} (take it "
              "from a log line, an error page's Reference or a queue message)", file=sys.stderr)
        return 1
    _print([timeline(svc, args.env, key.split("|", 1)[1]) for key in keys])
    return 0


def main() -> int:
    """CLI entry point."""
    return run()


if __name__ == "__main__":
    sys.exit(main())
