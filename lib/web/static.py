"""Static files of the web pages (CSS, bundled scripts, sounds) from ``lib/web/static``.

Served by ``functions/static.py`` at ``/api/static/<path>``. Only files inside the folder, by a path made of
plain segments, are served; a content hash (``?v=``) in the URL lets browsers cache them for a year.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

STATIC_ROOT = Path(__file__).resolve().parent / "static"

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_TYPES = {
    ".css": "text/css", ".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json",
    ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
    ".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".woff2": "font/woff2",
    ".txt": "text/plain",
}


@dataclass(frozen=True)
class StaticFile:
    """One static file: its bytes, content type and strong ETag (SHA-256 of the content)."""

    body: bytes
    content_type: str
    etag: str


def _safe_path(relative: str) -> Path | None:
    segments = relative.split("/")
    if not relative or len(segments) > 8 or not all(_SEGMENT.fullmatch(s) for s in segments):
        return None
    if any(s.startswith(".") or ".." in s for s in segments):
        return None
    path = STATIC_ROOT.joinpath(*segments)
    return path if path.is_file() else None


@lru_cache(maxsize=256)
def static_file(relative: str) -> StaticFile | None:
    """The file at ``relative`` (e.g. ``css/site.css``) inside the static folder, or None."""
    path = _safe_path(relative)
    if path is None:
        return None
    body = path.read_bytes()
    content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return StaticFile(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def content_version(relative: str) -> str | None:
    """A short content hash for cache-busting URLs, or None when the file does not exist."""
    found = static_file(relative)
    return found.etag.strip('"')[:12] if found else None
