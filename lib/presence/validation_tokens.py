"""Graph's ``validationTokens``: proof that a delivery of rich change notifications came from Microsoft Graph
(GRAPH ``concepts/change-notifications-with-resource-data.md``, "Validating the authenticity of notifications").

A delivery with resource data carries one JWT per (app, tenant) pair of its notifications, issued by the
Microsoft identity platform. Every token must pass, before anything of the delivery is used:

1. a compact JWS signed ``RS256`` with a key the identity platform publishes (the ``jwks_uri`` of the tenant's
   OpenID configuration, ``{authority}/{tenant}/.well-known/openid-configuration``);
2. ``iss`` = that configuration's ``issuer`` (the v1 form ``https://sts.windows.net/{tenant}/``, which is what
   Graph's tokens carry; the docs name no other form, so no other is accepted);
3. ``aud`` = our app's client ID;
4. ``exp`` in the future and ``nbf`` / ``iat`` not in the future (:data:`LEEWAY_SECONDS` of clock skew);
5. the publisher (``appid``, or ``azp`` in the v2 claim set) = Microsoft Graph change tracking,
   :data:`GRAPH_CHANGE_TRACKING_APP_ID`.

The keys rotate. :class:`IdentityPlatformKeys` caches the configuration and key set for a bounded time and
fetches again on a ``kid`` it does not know, but at most once per ``min_refetch_seconds``: a stream of tokens
with made-up ``kid`` values cannot make us hammer the identity platform, nor can an outage of it (the last
good read stands in for up to a day).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import KeySet, RSAKey

from lib.clock import Clock
from lib.presence.encrypted_content import NotificationRefused
from lib.smart.transport import HttpClient, TransportError, json_or_none

#: The application ID of "Microsoft Graph Change Tracking", the publisher of change notifications.
GRAPH_CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
ALGORITHMS = ("RS256",)
LEEWAY_SECONDS = 60
#: Graph sends one token per (app, tenant) pair; our notification URL serves one app in one tenant.
MAX_TOKENS = 8
MAX_TOKEN_CHARS = 16 * 1024
DEFAULT_TTL_SECONDS = 3600.0
DEFAULT_MIN_REFETCH_SECONDS = 60.0
DEFAULT_MAX_STALE_SECONDS = 24 * 3600.0
MAX_KEYS = 64


class SigningKeysUnavailable(Exception):
    """The identity platform's configuration or keys could not be read; ``reason`` is safe to log. The
    delivery cannot be checked now: answer 5xx so that Graph delivers it again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def http_json(http: HttpClient) -> Callable[[str], Any]:
    """A ``fetch(url) -> JSON`` over our outbound client (verified TLS, timeouts, no redirects).

    The returned function raises :class:`SigningKeysUnavailable` (``unreachable``, ``http_<status>``,
    ``not_json``).
    """

    def fetch(url: str) -> Any:
        try:
            response = http.get(url, headers={"Accept": "application/json"})
        except TransportError as exc:
            raise SigningKeysUnavailable(f"unreachable_{exc.kind}") from exc
        if response.status_code != 200:
            raise SigningKeysUnavailable(f"http_{response.status_code}")
        body = json_or_none(response)
        if body is None:
            raise SigningKeysUnavailable("not_json")
        return body

    return fetch


@dataclass(frozen=True)
class PublishedKeys:
    """One read of the identity platform: the issuer its tokens carry and its signing keys by ``kid``."""

    issuer: str
    keys: dict[str, RSAKey]
    fetched_at: float


def _https(value: Any) -> bool:
    return isinstance(value, str) and value.lower().startswith("https://") and "{" not in value


def parse_key_set(doc: Any, *, max_keys: int = MAX_KEYS) -> dict[str, RSAKey]:
    """The RSA signing keys of a JWK Set by ``kid`` (keys for encryption, without ``kid`` or of another type are
    skipped; at most ``max_keys``).

    Raises:
        SigningKeysUnavailable: ``bad_jwks`` (not a JWK Set, or no usable key).
    """
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise SigningKeysUnavailable("bad_jwks")
    usable = [k for k in entries if isinstance(k, dict) and k.get("kty") == "RSA" and k.get("use", "sig") == "sig"
              and isinstance(k.get("kid"), str) and k["kid"]][:max_keys]
    keys: dict[str, RSAKey] = {}
    for entry in usable:
        try:
            (key,) = KeySet.import_key_set({"keys": [entry]}).keys
        except (JoseError, ValueError, TypeError):  # one malformed key does not spoil the others
            continue
        if isinstance(key, RSAKey):
            keys[entry["kid"]] = key
    if not keys:
        raise SigningKeysUnavailable("bad_jwks")
    return keys


class IdentityPlatformKeys:
    """The identity platform's issuer and signing keys for our tenant, read from its OpenID configuration.

    Args:
        openid_configuration_url: ``{GRAPH_AUTHORITY_HOST}/{GRAPH_TENANT_ID}/.well-known/openid-configuration``.
        fetch_json: ``fetch(url) -> JSON`` raising :class:`SigningKeysUnavailable` (:func:`http_json`).
        clock: when a read was made (the cache's age; the app's clock, so the demo and tests can move it).
        ttl_seconds: how long a read is used before the next request reads again.
        min_refetch_seconds: the least time between two reads (an unknown ``kid``, an expired read, a failed
            one): at most one read per this many seconds, whatever the tokens say.
        max_stale_seconds: how long the last good read stands in while the identity platform cannot be read.
    """

    def __init__(self, openid_configuration_url: str, *, fetch_json: Callable[[str], Any], clock: Clock,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS,
                 min_refetch_seconds: float = DEFAULT_MIN_REFETCH_SECONDS,
                 max_stale_seconds: float = DEFAULT_MAX_STALE_SECONDS) -> None:
        self._url = openid_configuration_url
        self._fetch = fetch_json
        self._clock = clock
        self._ttl = ttl_seconds
        self._min_refetch = min_refetch_seconds
        self._max_stale = max_stale_seconds
        self._lock = threading.Lock()
        self._published: PublishedKeys | None = None
        self._last_attempt: float | None = None
        self.reads = 0  # reads of the identity platform (configuration + key set), for tests and metrics

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _since(self, then: float | None, now: float) -> float:
        # A clock that went back (the demo clock file) counts as "long ago": read again rather than never.
        return float("inf") if then is None or now < then else now - then

    def current(self, *, wanted_kid: str | None = None) -> PublishedKeys:
        """The keys to check a token with: the cached read while it is fresh (and holds ``wanted_kid``), else a
        new read, at most one per ``min_refetch_seconds``. When a read fails, the last good one is used while it
        is less than ``max_stale_seconds`` old (the keys it holds were the identity platform's own).

        One read at a time (the lock is held across it): concurrent deliveries wait for it rather than each
        calling the identity platform.

        Raises:
            SigningKeysUnavailable: no usable read (none yet, or the last good one is too old) and a new one
                failed now or less than ``min_refetch_seconds`` ago.
        """
        with self._lock:
            now = self._now()
            published = self._published
            usable = published if published is not None and \
                self._since(published.fetched_at, now) < self._max_stale else None
            fresh = usable is not None and self._since(usable.fetched_at, now) < self._ttl
            if fresh and (wanted_kid is None or wanted_kid in usable.keys):  # type: ignore[union-attr]
                return usable  # type: ignore[return-value]
            if self._since(self._last_attempt, now) < self._min_refetch:
                if usable is None:
                    raise SigningKeysUnavailable("recently_failed")
                return usable  # read (or tried) moments ago: answer from what we have, do not read again
            self._last_attempt = now
            self.reads += 1
            try:
                self._published = self._read(now)
            except SigningKeysUnavailable:
                if usable is None:
                    raise
                return usable
            return self._published

    def _read(self, now: float) -> PublishedKeys:
        config = self._fetch(self._url)
        issuer = config.get("issuer") if isinstance(config, dict) else None
        jwks_uri = config.get("jwks_uri") if isinstance(config, dict) else None
        if not _https(issuer) or not _https(jwks_uri):
            raise SigningKeysUnavailable("bad_openid_configuration")
        return PublishedKeys(issuer=issuer, keys=parse_key_set(self._fetch(jwks_uri)), fetched_at=now)  # type: ignore[arg-type]


def _refused(reason: str) -> NotificationRefused:
    return NotificationRefused(f"validation_token_{reason}")


_CLAIM_REASONS = {"iss": "wrong_issuer", "aud": "wrong_audience", "nbf": "not_yet_valid", "iat": "issued_in_future",
                  "exp": "expired"}


class ValidationTokenVerifier:
    """Checks the ``validationTokens`` of a delivery (module docstring).

    Args:
        keys: the identity platform's issuer and keys.
        client_id: our app registration's client ID (``GRAPH_CLIENT_ID``): the tokens' audience.
        clock: "now" for ``exp``/``nbf``/``iat``: the tokens carry the identity platform's wall-clock times, so
            this is the system clock, never the demo clock.
        leeway_seconds: clock skew tolerated on those times.
    """

    def __init__(self, keys: IdentityPlatformKeys, *, client_id: str, clock: Clock,
                 leeway_seconds: int = LEEWAY_SECONDS) -> None:
        self._keys = keys
        self._client_id = client_id
        self._clock = clock
        self._leeway = leeway_seconds

    def check_delivery(self, tokens: Any, *, required: bool) -> list[dict[str, Any]]:
        """Verify every token of a delivery's ``validationTokens``; returns their claims.

        Args:
            tokens: the delivery's ``validationTokens`` value as parsed (``None`` when absent).
            required: the delivery carries resource data, so Graph sends tokens: none is a refusal.

        Raises:
            NotificationRefused: ``validation_tokens_missing``, ``validation_tokens_malformed`` or the reason of
                the first token that fails (:meth:`verify`).
            SigningKeysUnavailable: the identity platform's keys cannot be read now.
        """
        if tokens is None or tokens == []:
            if required:
                raise NotificationRefused("validation_tokens_missing")
            return []
        if not isinstance(tokens, list) or len(tokens) > MAX_TOKENS:
            raise NotificationRefused("validation_tokens_malformed")
        return [self.verify(token) for token in tokens]

    def verify(self, token: Any) -> dict[str, Any]:
        """The claims of one validation token, after every check of the module docstring.

        Raises:
            NotificationRefused: ``validation_token_`` + ``malformed``, ``bad_algorithm``, ``unknown_key``,
                ``bad_signature``, ``claim_missing``, ``wrong_issuer``, ``wrong_audience``, ``expired``,
                ``not_yet_valid``, ``issued_in_future`` or ``not_from_graph``.
            SigningKeysUnavailable: the identity platform's keys cannot be read now.
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise _refused("malformed")
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError):
            raise _refused("malformed") from None
        if header.get("alg") not in ALGORITHMS:
            raise _refused("bad_algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _refused("malformed")
        published = self._keys.current(wanted_kid=kid)
        key = published.keys.get(kid)
        if key is None:
            raise _refused("unknown_key")
        try:
            claims = dict(jwt.decode(token, key, algorithms=list(ALGORITHMS)).claims)
        except BadSignatureError:
            raise _refused("bad_signature") from None
        except (JoseError, ValueError):
            raise _refused("malformed") from None
        self._check_claims(claims, issuer=published.issuer)
        return claims

    def _check_claims(self, claims: dict[str, Any], *, issuer: str) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock.now().timestamp()), leeway=self._leeway,
            iss={"essential": True, "value": issuer}, aud={"essential": True, "value": self._client_id},
            exp={"essential": True})
        try:
            registry.validate(claims)
        except MissingClaimError:
            raise _refused("claim_missing") from None
        except ExpiredTokenError:
            raise _refused("expired") from None
        except ClaimError as exc:
            raise _refused(_CLAIM_REASONS.get(exc.claim, "malformed")) from None
        publishers = {claims[name] for name in ("appid", "azp") if name in claims}
        if publishers != {GRAPH_CHANGE_TRACKING_APP_ID}:
            raise _refused("not_from_graph")
