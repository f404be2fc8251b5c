"""Client authentication with ``private_key_jwt`` (SMART App Launch STU 2.2,
client-confidential-asymmetric.html#authenticating-to-the-token-endpoint; RFC 7523 §2.2).

The token request carries ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``
and ``client_assertion=<JWT>``. The JWT: header ``alg`` RS384 or ES384 (the environment's
``client_assertion_alg``; SMART clients must support both), ``kid`` of the signing key, ``typ`` JWT;
claims ``iss`` = ``sub`` = client ID, ``aud`` = the token endpoint URL, ``exp`` at most 5 minutes ahead (we
use 4 to leave room for clock skew), ``iat`` = ``nbf`` = now (Epic checks spans of at most 5 minutes), and a
unique ``jti`` (Epic: at most 151 characters; ours is 43).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from joserfc import jwt

from lib.smart.keys import SmartKeys

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = timedelta(minutes=4)
MAX_LIFETIME = timedelta(minutes=5)


def build_client_assertion(
    keys: SmartKeys,
    *,
    client_id: str,
    token_endpoint: str,
    now: datetime,
    lifetime: timedelta = ASSERTION_LIFETIME,
    alg: str | None = None,
) -> str:
    """A signed client-authentication JWT for one token request.

    Args:
        keys: our keys; the active one signs.
        client_id: our client ID in this EHR environment.
        token_endpoint: the exact token URL (the ``aud``).
        now: current instant (aware UTC).
        lifetime: seconds until ``exp``; must not exceed 5 minutes.
        alg: ``RS384`` or ``ES384``; ``None`` = the first key's own algorithm.

    Returns:
        The compact JWS.

    Raises:
        ValueError: ``lifetime`` is over 5 minutes or not positive.
        LaunchError: ``SMART_KEYS_MISSING`` when no key of ``alg``'s family is loaded.
    """
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError("a client assertion lives more than 0 and at most 5 minutes")
    issued = int(now.timestamp())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "jti": secrets.token_urlsafe(32),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(lifetime.total_seconds()),
    }
    key, used_alg = keys.signer(alg)
    header = {"alg": used_alg, "kid": str(key.kid), "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[used_alg])


def client_assertion_params(keys: SmartKeys, *, client_id: str, token_endpoint: str, now: datetime,
                            alg: str | None = None) -> dict[str, str]:
    """The two form parameters that authenticate us at ``token_endpoint`` (``alg``: see
    :func:`build_client_assertion`)."""
    return {
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": build_client_assertion(keys, client_id=client_id, token_endpoint=token_endpoint,
                                                   now=now, alg=alg),
    }
