"""Epic's OAuth error answers, read once: the ``error`` code and Epic's own words (``error_description``).

An authorization server redirects errors back to the client as ``?error=...&error_description=...``
(RFC 6749 §4.1.2.1) and answers token requests with the same two fields (§5.2). The code alone is too coarse:
Epic answers ``invalid_request`` both for a launch that was already used and for an ``aud`` that is not the FHIR
base URL, and the fixes differ (start again from Epic; correct the URL registered in the portal). So the page
shows Epic's words, and :func:`classify` reads the few causes it knows from them.

Epic's words are shown (HTML-escaped by the templates) but never logged: a server may echo a value it refused,
and a launch token or code is a secret. They are cut to :data:`MAX_WORDS` characters, control characters
dropped, and any long token-like run (what a launch token, code or key looks like) replaced by ``[...]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from lib.smart.errors import LaunchError

#: The longest part of Epic's ``error_description`` shown.
MAX_WORDS = 200
_OAUTH_CODE = re.compile(r"[a-z_]{1,64}")
#: 24+ characters of base64url / hex / JWT with a digit among them: a launch token, a code, a key (never a word,
#: and not a URL path, whose ``/`` splits it).
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-.~+]{24,}")

Cause = Literal["launch_used", "audience", "redirect_uri", "scope", "client", "denied", "other"]

#: (cause, pattern over the lower-cased description) in the order they are tried.
_CAUSES: tuple[tuple[Cause, re.Pattern[str]], ...] = (
    ("launch_used", re.compile(r"\blaunch\b.*\b(already|used|expired|unknown|invalid|not (?:found|valid)|no longer)")),
    ("audience", re.compile(r"\baud\b|audience")),
    ("redirect_uri", re.compile(r"redirect[_ ]?ur[il]")),
    ("scope", re.compile(r"\bscopes?\b")),
    ("client", re.compile(r"client[_ ]?id|\bclient\b.*\b(unknown|not (?:registered|found|active|activated))")),
)
#: The causes the ``error`` code alone tells, when the words tell none.
_CODE_CAUSES: dict[str, Cause] = {"invalid_scope": "scope", "unauthorized_client": "client",
                                  "access_denied": "denied"}


@dataclass(frozen=True)
class OAuthError:
    """An OAuth error answer: ``code`` (the ``error`` value, ``unknown`` when missing or malformed) and
    ``words`` (Epic's ``error_description``, made safe to show; ``None`` when it gave none)."""

    code: str
    words: str | None

    @classmethod
    def read(cls, error: object, description: object) -> OAuthError:
        """The error of an answer's ``error`` and ``error_description`` values (strings, or anything else)."""
        code = error if isinstance(error, str) and _OAUTH_CODE.fullmatch(error) else "unknown"
        return cls(code, safe_words(description))

    @property
    def cause(self) -> Cause:
        """What the answer is about, from Epic's words first, then from the code."""
        return classify(self.code, self.words)

    def quoted(self) -> str:
        """``Epic answered 'invalid_request': "launch has already been used".`` (or without the words)."""
        said = f': "{self.words}"' if self.words else " (no description)"
        return f"Epic answered '{self.code}'{said}."


def safe_words(description: object) -> str | None:
    """``description`` fit to show on a page: printable, one line, token-like runs hidden, at most
    :data:`MAX_WORDS` characters (``...`` marks a cut); ``None`` when there is nothing to show."""
    if not isinstance(description, str):
        return None
    text = " ".join("".join(c if c.isprintable() else " " for c in description[:4 * MAX_WORDS]).split())
    text = _TOKEN_LIKE.sub(lambda run: "[...]" if any(c.isdigit() for c in run[0]) else run[0], text)
    if len(text) > MAX_WORDS:
        text = text[:MAX_WORDS - 3].rstrip() + "..."
    return text or None


def classify(code: str, words: str | None) -> Cause:
    """The cause of an OAuth error: Epic's words when they name one, else the ``error`` code's."""
    lowered = (words or "").lower()
    for cause, pattern in _CAUSES:
        if pattern.search(lowered):
            return cause
    return _CODE_CAUSES.get(code, "other")


def authorize_refusal(error: OAuthError) -> LaunchError:
    """The error page of a launch whose authorize request Epic refused (the callback's ``error``): the code for
    the cause, with Epic's words and the fix in the admin hint."""
    from lib.smart.errors import CATALOG, LaunchError

    said = error.quoted()
    cause = error.cause
    if cause == "launch_used":
        return LaunchError("LAUNCH_EXPIRED", f"{said} The launch token is single use and short-lived: a reloaded "
                                             "page, a restored browser tab or an old Epic activity presents it "
                                             "again. Nothing to fix: start the visit again from Epic.")
    if cause == "audience":
        return LaunchError("EPIC_AUDIENCE_REFUSED", f"{said} {CATALOG['EPIC_AUDIENCE_REFUSED'].admin_hint}")
    if cause == "redirect_uri":
        return LaunchError("EPIC_AUTHORIZE_ERROR", f"{said} Register {{public}}/api/launch/callback exactly "
                                                   "(scheme, host, path) as a redirect URI of this client in Epic.")
    if cause == "scope":
        return LaunchError("EPIC_SCOPE_NOT_GRANTED", f"{said} {CATALOG['EPIC_SCOPE_NOT_GRANTED'].admin_hint}")
    if cause == "client":
        return LaunchError("EPIC_CLIENT_NOT_MAPPED", f"{said} {CATALOG['EPIC_CLIENT_NOT_MAPPED'].admin_hint}")
    if cause == "denied":
        return LaunchError("EPIC_AUTHORIZE_ERROR", f"{said} Epic or the signed-in user refused access: check that "
                                                   "the user's Epic security allows this app, then start again.")
    return LaunchError("EPIC_AUTHORIZE_ERROR", f"{said} {CATALOG['EPIC_AUTHORIZE_ERROR'].admin_hint}")
