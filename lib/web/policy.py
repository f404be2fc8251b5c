"""The Content-Security-Policy of a page, built from named parts (never by string pasting in a trigger)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SELF = "'self'"
NONE = "'none'"


@dataclass(frozen=True)
class ContentPolicy:
    """A strict CSP: ``'self'`` scripts and styles only (no inline code), no plugins, no base-URI changes.

    ``form_action`` lists where forms may post *besides* ``'self'``; Chromium also applies ``form-action`` to
    the redirects that follow a form post, so a page posting to a third party must list every origin the
    post may be redirected through. ``frame_ancestors`` are the origins allowed to frame the page (an Epic
    origin configured for the environment); empty means only our own pages.
    """

    connect_src: tuple[str, ...] = ()
    media_src: tuple[str, ...] = ()
    img_src: tuple[str, ...] = ()
    form_action: tuple[str, ...] = ()
    frame_ancestors: tuple[str, ...] = ()
    worker_src: tuple[str, ...] = ()
    allow_forms: bool = True

    def with_frame_ancestors(self, origins: Iterable[str]) -> ContentPolicy:
        """The same policy, framable by ``origins`` as well."""
        return ContentPolicy(self.connect_src, self.media_src, self.img_src, self.form_action,
                             tuple(origins), self.worker_src, self.allow_forms)

    def header(self) -> str:
        """The ``Content-Security-Policy`` header value."""
        parts = [
            "default-src 'none'",
            f"script-src {SELF}",
            f"style-src {SELF}",
            f"img-src {_sources(SELF, 'data:', *self.img_src)}",
            f"font-src {SELF}",
            f"connect-src {_sources(SELF, *self.connect_src)}",
            "base-uri 'none'",
            "object-src 'none'",
            f"form-action {_sources(SELF, *self.form_action) if self.allow_forms else NONE}",
            f"frame-ancestors {_sources(SELF, *self.frame_ancestors)}",
        ]
        if self.media_src:
            parts.append(f"media-src {_sources(*self.media_src)}")
        if self.worker_src:
            parts.append(f"worker-src {_sources(*self.worker_src)}")
        return "; ".join(parts)


def _sources(*sources: str) -> str:
    """Source expressions joined once each, in order."""
    return " ".join(dict.fromkeys(s for s in sources if s))
