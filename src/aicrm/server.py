"""The whole web application: the REST API and the dashboard, composed in one ASGI app.

The composition root. :mod:`aicrm.api` knows nothing of the dashboard; :mod:`aicrm.web`
builds on the API's public names (its dependencies, key checks and sign-in throttle);
this module is the one place that imports both and mounts the dashboard's pages (and
the MCP server's HTTP endpoint) on the API's app, so the dependency between the two
packages runs one way (web → api).
:mod:`aicrm.asgi` is the entry point servers load (``uvicorn aicrm.asgi:app``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from aicrm import api, web
from aicrm.api.throttle import Throttle
from aicrm.db import Target
from aicrm.mcp import http as mcp_http

__all__ = ["create_app"]


def refusal_page(request: Request, status: int, title: str, message: str) -> Response:
    """The dashboard's page for a refusal the API's middleware makes (a 429)."""
    return web.page(request, "error.html", status, title=title, message=message)


def create_app(
    where: Target | None = None,
    *,
    pool_size: int | None = None,
    check_every: float | None = None,
    throttle: Throttle | None = None,
) -> FastAPI:
    """The API (:func:`aicrm.api.create_app`, same arguments) with the dashboard at /
    and the MCP tools at /mcp (streamable HTTP, :mod:`aicrm.mcp.http`)."""
    app = api.create_app(
        where,
        pool_size=pool_size,
        check_every=check_every,
        throttle=throttle,
        dashboard=api.Dashboard(web.router, refusal_page),
    )
    mcp_http.mount(app)
    return app
