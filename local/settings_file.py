"""Writes ``local.settings.json`` (the Functions host's local settings file) for a local profile.

``func start`` and the dev runner both read it. ``./dev setup`` writes it once; delete it to regenerate.
``--check`` says whether an existing file still points at the profile's local services: the ports move with
``LOCAL_PORT_OFFSET``, so a file written under another offset would send the app to services it did not start.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Settings for tests and tools only, not for the app.
_NOT_FOR_THE_APP = ("EPIC_STANDIN_URL", "GRAPH_STANDIN_URL", "ACS_STANDIN_URL")
#: Settings that name a local service's address (its port carries the offset).
_SERVICE_ADDRESSES = ("AzureWebJobsStorage", "COSMOS_ENDPOINT", "GRAPH_AUTHORITY_HOST", "GRAPH_BASE_URL")


def local_settings(profile: str) -> dict[str, object]:
    """The ``local.settings.json`` document for ``profile``."""
    from local import services

    values = {k: v for k, v in services.settings_for(profile, ROOT).items() if k not in _NOT_FOR_THE_APP}
    values["FUNCTIONS_WORKER_RUNTIME"] = "python"
    port = int(values["PUBLIC_BASE_URL"].rsplit(":", 1)[1])  # the profile's runner port (with any offset)
    return {"IsEncrypted": False, "Values": dict(sorted(values.items())), "Host": {"LocalHttpPort": port}}


def _address(value: object) -> str:
    """A setting compared for the address it names (a connection string's trailing ``;`` is optional)."""
    return str(value or "").strip().rstrip(";/")


def mismatch(path: Path, profile: str) -> str | None:
    """Why ``path`` does not fit ``profile``'s local services under the current offset, or ``None``."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))["Values"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{path.name} cannot be read as a local settings file ({exc.__class__.__name__})"
    expected = local_settings(profile)["Values"]
    wrong = [key for key in _SERVICE_ADDRESSES if _address(values.get(key)) != _address(expected[key])]
    if not wrong:
        return None
    return (f"{path.name} points {', '.join(wrong)} at other ports than the {profile} services of this run "
            f"(written under another LOCAL_PORT_OFFSET?): delete it and rerun to regenerate it, "
            f"or run with the offset it was written for")


def main() -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=["demo", "test"])
    parser.add_argument("--output", type=Path, default=ROOT / "local.settings.json")
    parser.add_argument("--check", action="store_true", help="only check an existing file; exit 2 if it does not fit")
    args = parser.parse_args()
    if args.check:
        problem = mismatch(args.output, args.profile)
        if problem:
            print(f"dev: {problem}", file=sys.stderr)
            return 2
        return 0
    args.output.write_text(json.dumps(local_settings(args.profile), indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
