"""Fixtures for the HL7 tests: the real-world samples and a builder for fictional messages.

The samples live in this repository under ``tests/fixtures/hl7-samples`` (provenance in their SOURCES.md);
they are read in binary and used exactly as they are.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SAMPLES_DIR", "SITE", "load_sample", "sample_names", "siu"]

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "hl7-samples"

#: Time zone and phone region of each sample's sender (prefix -> (IANA zone, ISO region)), from SOURCES.md.
SITE = {
    "01": ("America/Chicago", "US"),  # Epic example, Madison WI
    "03": ("America/Chicago", "US"),  # Houston TX
    "04": ("America/Indiana/Indianapolis", "US"),  # Fort Wayne IN
    "07": ("Europe/London", "GB"),
    "08": ("Europe/London", "GB"),
    "10": ("Europe/London", "GB"),
    "11": ("Europe/London", "GB"),
    "12": ("Europe/Berlin", "DE"),
    "14": ("Europe/Berlin", "DE"),
    "15": ("Europe/Berlin", "DE"),
    "17": ("Europe/Paris", "FR"),
    "18": ("Europe/Berlin", "DE"),
}


def load_sample(name: str) -> bytes:
    """Bytes of one sample, e.g. ``load_sample("01-epic-cadence-spec-s12-v23.hl7")``.

    A unique prefix such as ``"01"`` or ``"01-"`` also works.
    """
    path = SAMPLES_DIR / name
    if not path.is_file():
        matches = sorted(SAMPLES_DIR.glob(f"{name}*.hl7"))
        if len(matches) != 1:
            raise FileNotFoundError(f"no unique HL7 sample named {name!r} in {SAMPLES_DIR}")
        path = matches[0]
    return path.read_bytes()


def sample_names() -> list[str]:
    """File names of all samples (``*.hl7``), sorted."""
    return sorted(p.name for p in SAMPLES_DIR.glob("*.hl7"))


def siu(
    *segments: str,
    event: str = "S12",
    msh_extra: str = "P|2.5.1",
    control_id: str = "MSG0001",
    msh18: str = "",
    sep: str = "\r",
) -> bytes:
    """A fictional SIU message: an MSH line followed by ``segments`` (strings, ``|`` separated).

    Defaults give a valid header (``SIU^<event>``, MSH-10 ``MSG0001``, ``P``, ``2.5.1``).
    """
    msh = f"MSH|^~\\&|SCHED|TESTFAC|VV|VVFAC|20260110090000||SIU^{event}|{control_id}|{msh_extra}"
    if msh18:
        msh += "||||||" + msh18
    text = sep.join([msh, *segments]) + sep
    return text.encode("latin-1" if msh18 == "8859/1" else "utf-8")


def seg(sid: str, fields: dict[int, str]) -> str:
    """One segment from ``{field position: raw value}``, e.g. ``seg("PV1", {2: "O", 19: "V1"})``."""
    top = max(fields, default=0)
    return "|".join([sid] + [fields.get(i, "") for i in range(1, top + 1)])
