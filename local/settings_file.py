"""Writes ``local.settings.json`` (the Functions host's local settings file) for a local profile.

``func start`` and the dev runner both read it. ``./dev setup`` writes it once; delete it to regenerate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Settings for tests and tools only, not for the app.
_NOT_FOR_THE_APP = ("EPIC_STANDIN_URL", "GRAPH_STANDIN_URL", "ACS_STANDIN_URL")


def local_settings(profile: str) -> dict[str, object]:
    """The ``local.settings.json`` document for ``profile``."""
    from local import services

    values = {k: v for k, v in services.settings_for(profile, ROOT).items() if k not in _NOT_FOR_THE_APP}
    values["FUNCTIONS_WORKER_RUNTIME"] = "python"
    port = int(values["PUBLIC_BASE_URL"].rsplit(":", 1)[1])  # the profile's runner port (with any offset)
    return {"IsEncrypted": False, "Values": dict(sorted(values.items())), "Host": {"LocalHttpPort": port}}


def main() -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=["demo", "test"])
    parser.add_argument("--output", type=Path, default=ROOT / "local.settings.json")
    args = parser.parse_args()
    args.output.write_text(json.dumps(local_settings(args.profile), indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
