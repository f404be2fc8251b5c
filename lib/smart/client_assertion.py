"""Client authentication with ``private_key_jwt`` (SMART App Launch STU 2.2,
client-confidential-asymmetric.html#authenticating-to-the-token-endpoint; RFC 7523 §2.2).

The token request carries ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``
and ``client_assertion=<JWT>``. The JWT: header ``alg`` RS384, ``kid`` of the signing key, ``typ`` JWT;
claims ``iss`` = ``sub`` = client ID, ``aud`` = the token endpoint URL, ``exp`` at most 5 minutes ahead (we
use 4 to leave room for clock skew), ``iat`` = ``nbf`` = now (Epic checks spans of at most 5 minutes), and a
unique ``jti`` (Epic: at most 151 characters; ours is 43).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from joserfc import jwt

from lib.smart.keys import SIGNING_ALG, SmartKeys

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
) -> str:
    """A signed client-authentication JWT for one token request.

    Args:
        keys: our keys; the active one signs.
        client_id: our client ID in this EHR environment.
        token_endpoint: the exact token URL (the ``aud``).
        now: current instant (aware UTC).
        lifetime: seconds until ``exp``; must not exceed 5 minutes.

    Returns:
        The compact JWS.

    Raises:
        ValueError: ``lifetime`` is over 5 minutes or not positive.
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
    header = {"alg": SIGNING_ALG, "kid": keys.active_kid, "typ": "JWT"}
    return jwt.encode(header, claims, keys.active, algorithms=[SIGNING_ALG])


def client_assertion_params(keys: SmartKeys, *, client_id: str, token_endpoint: str, now: datetime) -> dict[str, str]:
    """The two form parameters that authenticate us at ``token_endpoint``."""
    return {
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": build_client_assertion(keys, client_id=client_id, token_endpoint=token_endpoint, now=now),
    }
