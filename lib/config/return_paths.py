"""Where the portal's sign-in may send the browser back to (``?next=``): a page of the portal on this site,
never another site. Anything else is refused, and the sign-in goes to the portal's front door."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

#: The pages a sign-in may return to.
PORTAL_PREFIX = "/api/portal"
#: Longest return path kept (a page URL with a short query).
MAX_LENGTH = 1024
_SAFE = re.compile(r"[A-Za-z0-9\-._~/?=&%+:@!$'()*,;]+")


def safe_return_path(value: object) -> str | None:
    """``value`` when it is a same-origin relative path under ``/api/portal`` (with its query), else ``None``.

    Refused: absolute and scheme-relative URLs (``https://evil``, ``//evil``), backslashes browsers read as
    slashes (``/\\evil``), control characters and spaces, dot segments, and any of these hidden behind
    percent-encoding (``/%2F%2Fevil``, ``/api/portal/..%2F..%2Fx``), checked on every decoding of the value.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH or not _SAFE.fullmatch(value):
        return None
    seen, current = [value], value
    for _ in range(3):  # a value decoded twice by some hop must still be safe
        decoded = unquote(current)
        if decoded == current:
            break
        seen.append(decoded)
        current = decoded
    for form in seen:
        if "\\" in form or any(ord(c) < 0x21 or ord(c) == 0x7F for c in form) or form.startswith("//"):
            return None
        parts = urlsplit(form)
        if parts.scheme or parts.netloc or parts.fragment:
            return None
        if parts.path != PORTAL_PREFIX and not parts.path.startswith(PORTAL_PREFIX + "/"):
            return None
        if any(segment in {".", ".."} for segment in parts.path.split("/")) or "//" in parts.path:
            return None
    return value
