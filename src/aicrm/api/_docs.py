"""``/docs``: Swagger UI served from the installed packages, never from a CDN.

The assets are those of PyPI's ``fastapi-offline`` (its ``static`` folder); the
page's start-up code is a file of ours (``api/static/docs.js``), not an inline
script, so the Content-Security-Policy of :mod:`aicrm.api._security` holds here too.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

# name -> (package, media type): a fixed list, no paths from the URL.
ASSETS = {
    "swagger-ui-bundle.js": ("fastapi_offline", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("fastapi_offline", "text/css; charset=utf-8"),
    "favicon.png": ("fastapi_offline", "image/png"),
    "docs.js": ("aicrm.api", "text/javascript; charset=utf-8"),
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>aicrm API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" href="/docs/assets/favicon.png" type="image/png">
</head>
<body>
<div id="swagger-ui" data-openapi="/openapi.json"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs.js"></script>
</body>
</html>
"""


@router.get("/docs")
def docs() -> HTMLResponse:
    """The interactive API documentation."""
    return HTMLResponse(PAGE)


@router.get("/docs/assets/{name}")
def asset(name: str) -> Response:
    """One of the page's assets, from the package that ships it."""
    found = ASSETS.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    package, media = found
    body = files(package).joinpath("static", name).read_bytes()
    return Response(body, media_type=media, headers={"Cache-Control": "public, max-age=86400"})
