"""Single-use JWS IDs of signed HL7 intake requests (container ``hl7_jti``, partition key ``/id``).

One document per ``{environmentId}|{jti}``, created with ``create_item`` so that exactly one request
can claim an ID even when two arrive at once (the second gets HTTP 409 from Cosmos DB). Each document
carries a ``ttl`` that outlives the signature's acceptance window, so the container stays small.
"""

from __future__ import annotations

from datetime import datetime

from lib.models import cosmos_ttl, iso, safe_key
from lib.store.cosmos import CosmosStore, translated_errors
from lib.store.errors import AlreadyExists


class JtiStore:
    """The ``jti`` replay store used by :class:`lib.scheduling.signature.JwsRequestVerifier`."""

    def __init__(self, store: CosmosStore) -> None:
        self._container = store.container("hl7_jti")

    def claim(self, environment_id: str, jti: str, *, expires: datetime, now: datetime) -> bool:
        """Record ``jti`` for ``environment_id`` until ``expires`` (UTC); ``False`` when already recorded.

        Raises:
            StoreUnavailable: Cosmos DB cannot be reached or throttles.
        """
        ttl = cosmos_ttl((expires - now).total_seconds() + 60)
        try:
            with translated_errors():
                self._container.create_item(
                    {"id": safe_key(environment_id, jti), "expires": iso(expires), "ttl": ttl}
                )
        except AlreadyExists:
            return False
        return True
