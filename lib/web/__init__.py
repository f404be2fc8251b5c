"""Server-rendered pages: one Jinja2 environment (autoescaping), one layout, static files, one CSP builder.

Every HTML page of the app (launch error pages, the patient's join page, the portal, reports) is rendered
here from ``lib/web/templates`` with :func:`render`, and carries a Content-Security-Policy built by
:class:`ContentPolicy`: no inline script or style, ever; scripts and styles come from ``/api/static/``.
"""

from lib.web.policy import ContentPolicy
from lib.web.rendering import render, render_text, static_url
from lib.web.static import StaticFile, static_file

__all__ = ["ContentPolicy", "StaticFile", "render", "render_text", "static_file", "static_url"]
