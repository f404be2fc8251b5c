"""A short-lived Azure Communication Services identity and ``voip`` token for one patient join.

One new identity per join (``create_user_and_token``), token lifetime :data:`TOKEN_LIFETIME` (the service's
minimum, one hour). Nothing about the patient goes to ACS: the identity is an opaque ``8:acs:...`` ID. With
it the browser joins the Teams meeting as an anonymous guest (Teams interoperability) and waits in the lobby.

Uses the real ``azure-communication-identity`` SDK: a connection string locally (HMAC-signed requests to the
ACS stand-in), the ACS endpoint with ``DefaultAzureCredential`` in Azure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: The token's lifetime: ACS accepts 60 to 1440 minutes; a join needs minutes, so the minimum.
TOKEN_LIFETIME = timedelta(hours=1)


class CallIdentityUnavailable(Exception):
    """ACS did not issue the identity (down, throttled, refused). ``reason`` is safe to log (no token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CallCredential:
    """What the browser needs: the ACS ``user_id`` (``8:acs:...``), its ``token`` and ``expires_utc``."""

    user_id: str
    token: str
    expires_utc: datetime


class AcsCallIdentityIssuer:
    """Issues :class:`CallCredential` with ``azure.communication.identity.CommunicationIdentityClient``.

    Args:
        connection_string: ``endpoint=https://...;accesskey=...`` (local or key-based), or
        endpoint: the ACS endpoint, used with ``DefaultAzureCredential`` when no connection string is given.
        verify: TLS verification (``True`` or a CA bundle path; the bundle only locally).
        timeout: read timeout per request, in seconds.
    """

    def __init__(self, *, connection_string: str | None = None, endpoint: str | None = None,
                 verify: bool | str = True, timeout: float = 10.0) -> None:
        from azure.communication.identity import CommunicationIdentityClient

        from lib.observability.correlation import azure_core_policy

        options: dict[str, Any] = {"connection_verify": verify, "retry_total": 1, "read_timeout": timeout,
                                   "per_call_policies": [azure_core_policy()]}
        if connection_string:
            self._client = CommunicationIdentityClient.from_connection_string(connection_string, **options)
        elif endpoint:
            from azure.identity import DefaultAzureCredential

            self._client = CommunicationIdentityClient(endpoint, DefaultAzureCredential(), **options)
        else:
            raise ValueError("ACS is not configured: set ACS_CONNECTION_STRING or ACS_ENDPOINT")

    def issue(self) -> CallCredential:
        """A new identity with a ``voip`` token.

        Raises:
            CallIdentityUnavailable: ACS refused or could not be reached.
        """
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            user, token = self._client.create_user_and_token(scopes=["voip"], token_expires_in=TOKEN_LIFETIME)
        except HttpResponseError as exc:
            raise CallIdentityUnavailable(f"ACS answered HTTP {exc.status_code}") from None
        except AzureError as exc:
            raise CallIdentityUnavailable(f"ACS unreachable: {type(exc).__name__}") from None
        return CallCredential(user_id=user.properties["id"], token=token.token,
                              expires_utc=_expiry(token.expires_on))


def _expiry(value: Any) -> datetime:
    """The token's expiry: SDK 1.5.0 hands back the service's ISO 8601 string, though ``AccessToken``
    documents Unix seconds; accept both (and a datetime)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
