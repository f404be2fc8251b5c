"""The one Jinja2 environment, the CSP builder and the static files (lib/web)."""

from __future__ import annotations

import jinja2
import pytest

from lib.web import ContentPolicy, render, render_text, static_file, static_url
from lib.web.rendering import environment


def test_page_data_is_escaped_in_markup():
    html = environment().from_string("<p title='{{ v }}'>{{ v }}</p>").render(v="<script>'x'&\"y\"</script>")
    assert "<script>" not in html
    assert "&lt;script&gt;&#39;x&#39;&amp;&#34;y&#34;&lt;/script&gt;" in html


def test_an_undefined_template_variable_is_an_error_not_an_empty_string():
    with pytest.raises(jinja2.UndefinedError):
        render_text("launch_error.html", {"message": "m"})


def test_rendered_page_links_the_stylesheet_by_content_version_and_has_no_inline_style_or_script():
    page = render("launch_error.html", {"message": "m", "code": "C", "correlation_id": "r", "admin_hint": "h",
                                        "retry_advice": None}, status=418)
    assert page.status == 418
    assert f'href="{static_url("css/site.css")}"' in page.html
    assert "<style" not in page.html and "<script" not in page.html
    assert 'lang="en"' in page.html


def test_default_policy_is_strict_and_self_only():
    header = ContentPolicy().header()
    directives = dict(part.split(" ", 1) for part in header.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["form-action"] == "'self'"
    assert directives["frame-ancestors"] == "'self'"
    assert directives["base-uri"] == "'none'"
    assert "unsafe-inline" not in header and "unsafe-eval" not in header


def test_policy_lists_extra_origins_once_each_and_can_forbid_forms():
    policy = ContentPolicy(connect_src=("https://a.example", "https://a.example"),
                           frame_ancestors=("https://epic.example.org",), allow_forms=False,
                           media_src=("'self'", "blob:"))
    directives = dict(part.split(" ", 1) for part in policy.header().split("; "))
    assert directives["connect-src"] == "'self' https://a.example"
    assert directives["frame-ancestors"] == "'self' https://epic.example.org"
    assert directives["form-action"] == "'none'"
    assert directives["media-src"] == "'self' blob:"
    framed = ContentPolicy().with_frame_ancestors(["https://b.example"])
    assert "frame-ancestors 'self' https://b.example" in framed.header()


def test_static_files_are_served_from_the_static_folder_only():
    css = static_file("css/site.css")
    assert css is not None and css.content_type == "text/css" and css.etag.startswith('"')
    for bad in ("../rendering.py", "css/../../rendering.py", "/etc/passwd", "css//site.css", ".hidden",
                "css/.site.css", "", "css/site.css/", "templates/layout.html", "css\\site.css",
                "css/site.css%00", "a/" * 9 + "x.css"):
        assert static_file(bad) is None, bad


def test_static_url_names_a_missing_file_loudly():
    with pytest.raises(LookupError, match="no static file"):
        static_url("js/missing.js")
