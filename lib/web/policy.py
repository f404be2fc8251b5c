"""The Content-Security-Policy of a page, built from named parts (never by string pasting in a trigger)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lib.field_rules import frame_origin_problem

SELF = "'self'"
NONE = "'none'"


@dataclass(frozen=True)
class ContentPolicy:
    """A strict CSP: ``'self'`` scripts and styles only (no inline code), no plugins, no base-URI changes.

    ``form_action`` lists where forms may post *besides* ``'self'``; Chromium also applies ``form-action`` to
    the redirects that follow a form post, so a page posting to a third party must list every origin the
    post may be redirected through. ``frame_ancestors`` are the origins allowed to frame the page (an Epic
    origin configured for the environment); empty means only our own pages. Only valid origins reach the
    header (:func:`lib.field_rules.frame_origin_problem`): a stored value from before the portal checked them
    (``*``, ``'unsafe-inline'``, a header injection) is dropped. ``frame_anyone`` lets any page frame this
    one (only for the page explaining a refused frame, which holds nothing else).
    """

    connect_src: tuple[str, ...] = ()
    media_src: tuple[str, ...] = ()
    img_src: tuple[str, ...] = ()
    form_action: tuple[str, ...] = ()
    frame_ancestors: tuple[str, ...] = ()
    worker_src: tuple[str, ...] = ()
    allow_forms: bool = True
    frame_anyone: bool = False

    def with_frame_ancestors(self, origins: Iterable[str]) -> ContentPolicy:
        """The same policy, framable by ``origins`` as well."""
        return ContentPolicy(self.connect_src, self.media_src, self.img_src, self.form_action,
                             tuple(origins), self.worker_src, self.allow_forms, self.frame_anyone)

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
            f"frame-ancestors {_sources(SELF, *self.framing_origins())}",
        ]
        if self.media_src:
            parts.append(f"media-src {_sources(*self.media_src)}")
        if self.worker_src:
            parts.append(f"worker-src {_sources(*self.worker_src)}")
        return "; ".join(parts)

    def framing_origins(self) -> tuple[str, ...]:
        """Who may frame the page besides us: ``*`` when anyone may, else the valid origins given."""
        if self.frame_anyone:
            return ("*",)
        return tuple(o for o in self.frame_ancestors if frame_origin_problem(o) is None)


def _sources(*sources: str) -> str:
    """Source expressions joined once each, in order."""
    return " ".join(dict.fromkeys(s for s in sources if s))
