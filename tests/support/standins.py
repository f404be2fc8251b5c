"""Reading the stand-ins' recorded calls and scripting their faults (their ``/_standin/`` control API)."""

from __future__ import annotations

from typing import Any

import requests


class AcsStandin:
    """The ACS SMS stand-in of the test profile."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.url = settings["ACS_STANDIN_URL"]
        self.verify = settings["LOCAL_CA_BUNDLE"]

    def texts(self, environment_id: str) -> list[dict[str, Any]]:
        """Accepted texts whose tag (the outbox ID) belongs to ``environment_id``, oldest first."""
        response = requests.get(f"{self.url}/_standin/messages", verify=self.verify, timeout=10)
        response.raise_for_status()
        return [
            m for m in response.json() if m["successful"] and (m.get("tag") or "").startswith(f"{environment_id}|")
        ]

    def fail_next(self, *responses: object) -> None:
        """Script the next ``/sms`` answers, e.g. ``429``, ``{"status": 500}``, ``{"delay": 5}``."""
        requests.post(
            f"{self.url}/_standin/faults", json={"path_prefix": "/sms", "responses": list(responses)},
            verify=self.verify, timeout=10,
        ).raise_for_status()

    def fail_recipient(self, to: str, status: int, message: str) -> None:
        """Make every send to ``to`` fail for that recipient with ``status`` and ``message``."""
        requests.post(
            f"{self.url}/_standin/recipient-faults",
            json={"to": to, "httpStatusCode": status, "errorMessage": message},
            verify=self.verify, timeout=10,
        ).raise_for_status()

    def clear_faults(self) -> None:
        """Forget scripted faults."""
        requests.delete(f"{self.url}/_standin/faults", verify=self.verify, timeout=10)
        requests.delete(f"{self.url}/_standin/recipient-faults", verify=self.verify, timeout=10)
