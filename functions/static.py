"""HTTP trigger serving the web pages' static files (``GET /api/static/{*path}``): CSS and bundled scripts.

Files come only from ``lib/web/static`` (``lib.web.static_file`` refuses anything else); a request carrying
the file's content version (``?v=``, as ``static_url`` writes it) may be cached for a year.
"""

from __future__ import annotations

import azure.functions as func

from functions.observability import observed

bp = func.Blueprint()


@bp.route(route="static/{*path}", methods=["GET", "HEAD"], auth_level=func.AuthLevel.ANONYMOUS)
@observed("static_files")
def static_files(req: func.HttpRequest) -> func.HttpResponse:
    from lib.web.static import static_file

    found = static_file(req.route_params.get("path") or "")
    if found is None:
        return func.HttpResponse("Not found", status_code=404, mimetype="text/plain",
                                 headers={"X-Content-Type-Options": "nosniff"})
    cache = "public, max-age=31536000, immutable" if req.params.get("v") else "public, max-age=300"
    headers = {"ETag": found.etag, "Cache-Control": cache, "X-Content-Type-Options": "nosniff",
               "Cross-Origin-Resource-Policy": "same-origin"}
    if req.headers.get("if-none-match") == found.etag:
        return func.HttpResponse(status_code=304, headers=headers)
    body = b"" if req.method == "HEAD" else found.body
    return func.HttpResponse(body, status_code=200, headers={**headers, "Content-Type": found.content_type})
