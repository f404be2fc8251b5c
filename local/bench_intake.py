"""Benchmark: the whole HL7 intake handler, in process, against the local Cosmos-compatible server.

What one measured call does (``IntakeService.handle``, what ``POST /api/hl7/{environmentId}`` runs): JWS
signature check with the environment's certificate (RS256, RSA 2048) and ``jti`` claim in Cosmos DB, MLLP/
line-ending normalisation, MSH read, duplicate check, SIU extraction, appointment write with ETag, phone
number and join link, SMS planning and outbox documents (SMS on, as in a real environment), processed-
message record, ACK. Each message is a new S12 for a new appointment (the costliest path). Signing is the
sender's work and is done outside the timed part. Numbers, not assertions: nothing here is a test.

Also reported: ``verify_only_msgs_per_s``, the signature check alone (in-memory ``jti`` registry), to show
how much of the handler's time is cryptography rather than storage; ``store_calls_new_s12`` and
``store_calls_duplicate``, the Cosmos DB requests of one new S12 and of one resend of an accepted message
(counted on the wire, :mod:`local.store_calls`); and ``handler_over_floor``, the handler's median time over
its floor: the signature check, the SIU parse and one upsert of the appointment document (what any intake
must do), measured the same way on the same messages.

Usage: ``python -m local.bench_intake [--seconds N] [--profile test|demo]``; ``run(seconds)`` returns the
dict. The profile's local services are started when not running (and stopped again afterwards).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class _MemoryJti:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def claim(self, environment_id: str, jti: str, *, expires: datetime, now: datetime) -> bool:
        key = (environment_id, jti)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _sender() -> tuple[bytes, str]:
    """A fresh RSA 2048 key and self-signed certificate: (key PEM, certificate PEM text)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-interface-engine")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def run(seconds: float = 5.0, profile: str = "test") -> dict[str, Any]:
    """Messages per second of the whole intake handler, and of the signature check alone.

    Args:
        seconds: time spent in measured handler calls (signing and set-up are not counted).
        profile: local services profile whose Cosmos-compatible server is used.

    Returns:
        ``intake_msgs_per_s``, ``latency_ms_p50``, ``latency_ms_p95``, ``messages``, ``acks`` (MSA-1 counts),
        ``verify_only_msgs_per_s``, ``signature`` and ``store`` (what was measured).
    """
    from functions.dependencies import Services
    from lib.clock import SystemClock
    from lib.hl7.framing import unframe
    from lib.hl7.siu import parse_siu
    from lib.models import EnvironmentConfig, SmsSettings
    from lib.scheduling.signature import JwsRequestVerifier, sign_request
    from local import services
    from local.siu_builder import siu
    from local.store_calls import StoreCallCounter

    handle = services.start(profile, ROOT)
    try:
        app = Services(services.settings_for(profile, ROOT))
        app.store.ensure_schema()
        key_pem, cert = _sender()
        env_id = f"bench-{uuid.uuid4().hex[:8]}"
        environment = EnvironmentConfig(
            id=env_id, kind="test", display_name="Bench Health", fhir_base_urls=(), approved=True,
            epic_client_id="bench", sms=SmsSettings(enabled=True, sender="+18005550100"),
            hl7_auth="jws", hl7_certificates=(cert,),
        )
        app.repos.environments.put(environment)
        intake = app.intake
        now = datetime.now(UTC)
        start = now + timedelta(days=7)

        def message(i: int) -> tuple[bytes, dict[str, str]]:
            body = siu("S12", csn=f"B{i:07d}", start=start, control_id=f"BENCH-{i}", sent=now)
            return body, {"X-HL7-Signature": sign_request(body, private_key_pem=key_pem, environment_id=env_id)}

        intake.handle(env_id, *message(0))  # warm-up: connections, caches
        # The floor: what any intake must do per message, on the same kind of message and store. Measured
        # interleaved with the handler (one floor message after each handler message), so whatever else runs
        # on the machine weighs on both alike and their ratio compares like with like.
        visits = app.store.container("visits")
        floor_verifier = JwsRequestVerifier(jti=_MemoryJti(), clock=SystemClock())

        def floor_once(k: int) -> float:
            body, headers = message(200_000 + k)
            t0 = time.perf_counter()
            floor_verifier.verify(environment, headers, body)
            parsed = parse_siu(unframe(body), time_zone=environment.time_zone,
                               default_region=environment.default_region)
            key = f"{env_id}|floor-{k}"
            visits.upsert_item({"id": key, "appointmentKey": key, "type": "appointment", "environmentId": env_id,
                                "appointmentId": parsed.appointment_id, "status": parsed.status})
            return time.perf_counter() - t0

        floor_once(0)
        counter = StoreCallCounter(app.settings.cosmos_endpoint)
        latencies: list[float] = []
        floor: list[float] = []
        calls_new: list[int] = []
        acks: dict[str, int] = {}
        spent = 0.0
        i = 0
        with counter.installed():
            while spent < seconds:
                i += 1
                body, headers = message(i)
                counter.reset()
                t0 = time.perf_counter()
                result = intake.handle(env_id, body, headers)
                elapsed = time.perf_counter() - t0
                calls_new.append(counter.total)
                spent += elapsed
                latencies.append(elapsed)
                acks[result.ack_code or str(result.status)] = acks.get(result.ack_code or str(result.status), 0) + 1
                floor.append(floor_once(i))
            calls_duplicate: list[int] = []
            for k in range(1, min(i, 20) + 1):  # the sender resends accepted messages (new signature each)
                body, headers = message(k)
                counter.reset()
                intake.handle(env_id, body, headers)
                calls_duplicate.append(counter.total)

        verifier = JwsRequestVerifier(jti=_MemoryJti(), clock=SystemClock())
        signed = [message(100_000 + k) for k in range(200)]
        t0 = time.perf_counter()
        for body, headers in signed:
            verifier.verify(environment, headers, body)
        verify_rate = len(signed) / (time.perf_counter() - t0)
    finally:
        handle.stop()

    latencies.sort()
    return {
        "intake_msgs_per_s": round(len(latencies) / spent, 1),
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 2),
        "latency_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 2),
        "messages": len(latencies),
        "acks": acks,
        "verify_only_msgs_per_s": round(verify_rate),
        "store_calls_new_s12": round(statistics.fmean(calls_new), 2),
        "store_calls_duplicate": round(statistics.fmean(calls_duplicate), 2) if calls_duplicate else None,
        "floor_ms_p50": round(statistics.median(floor) * 1000, 2),
        "handler_over_floor": round(statistics.median(latencies) / statistics.median(floor), 2),
        "signature": "RS256, RSA 2048, jti in Cosmos DB",
        "store": "local Cosmos-compatible server (@vercel/cosmosdb-server) through azure-cosmos, one client",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI entry point: print the result dict and return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time (default 5)")
    parser.add_argument("--profile", default="test", choices=["test", "demo"])
    args = parser.parse_args(argv)
    result = run(args.seconds, args.profile)
    print(f"HL7 intake, whole handler: {result['intake_msgs_per_s']} msg/s "
          f"(p50 {result['latency_ms_p50']} ms, p95 {result['latency_ms_p95']} ms, {result['messages']} messages); "
          f"signature check alone {result['verify_only_msgs_per_s']} msg/s")
    print(result)
    return result


if __name__ == "__main__":
    main()
