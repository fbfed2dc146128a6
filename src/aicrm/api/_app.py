"""The FastAPI application: the API under /api, and a dashboard at / when given one.

The API does not import the dashboard (:mod:`aicrm.web` builds on the API):
:func:`aicrm.server.create_app` hands it in as a :class:`Dashboard`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aicrm import __version__
from aicrm.api import _docs as docs, _reads as reads, _timelines as timelines, problems
from aicrm.api._security import SecurityHeaders
from aicrm.api.routes import (
    activities as activity_routes,
    ai,
    assignment_rules,
    clients,
    contacts,
    leads,
    meta,
    reports,
    transfer,
    users as user_routes,
)
from aicrm.api.throttle import Page, SignInThrottle, Throttle
from aicrm.db import Connection, Router, Target, target

JSON_BODY_LIMIT = 1 << 20  # bytes; the CSV import has its own, larger limit

DESCRIPTION = """\
An AI-centric CRM on PostgreSQL.

**Authentication**: every route but `/api/ping` needs an API key, sent as
`Authorization: Bearer <key>` (or `X-API-Key: <key>`); create one with
`aicrm apikey create NAME --scope read|write|admin`. A read key reads, a write key
also changes records, an admin key also manages keys. No key: 401; too narrow a
scope: 403. Changes are recorded in the history under the key's name.

**Errors** are RFC 9457 problem details (`application/problem+json`) with `type`,
`title`, `status` and `detail`; a 422 lists `errors`, each naming its `field`; a 409
(duplicate email, converted lead) and a 412 (stale update) carry `conflicting`.

**ETags**: a record's responses carry an `ETag`; send it back in `If-Match` on
PATCH or DELETE to be refused (412) if the record changed since, or in
`If-None-Match` on GET to get a 304 when it has not.

**Pagination**: lists return `{"items": [...], "next_cursor": ...}`; pass
`cursor=<next_cursor>` for the next page, until `next_cursor` is null.
"""


@dataclass(frozen=True)
class Dashboard:
    """Pages served beside the API: their router (mounted at /) and the page that
    renders a refusal of the API's middleware (the sign-in throttle's 429) off /api."""

    router: APIRouter
    refusal_page: Page


def default_pool_size() -> int:
    """Connections per pool (``AICRM_API_POOL_SIZE``, default 8); each worker process has
    two pools: one for the library's calls, one for the async reads by id."""
    try:
        return max(1, int(os.environ.get("AICRM_API_POOL_SIZE", "8")))
    except ValueError:
        return 8


def replica_pool(
    where: Target, size: int, check_every: float | None
) -> tuple[ConnectionPool[Connection] | None, Router | None]:
    """The pool of the read replica and the router that says when to use it; none
    without ``AICRM_READ_URL``. Opened without waiting: a replica that is down when
    the app starts only sends the reads to the primary."""
    if where.read is None:
        return None, None
    read = where.read
    kwargs = {"application_name": "aicrm api", "autocommit": True, **read.connect_kwargs()}
    pool: ConnectionPool[Connection] = ConnectionPool(
        read.conninfo,
        min_size=1,
        max_size=size,
        kwargs=kwargs,
        open=False,
        check=ConnectionPool.check_connection,  # a restarted replica leaves dead ones
    )
    pool.open(wait=False)
    if check_every is None:
        return pool, Router(where)
    return pool, Router(where, check_every=check_every, retry_every=check_every)


def create_app(
    where: Target | None = None,
    *,
    pool_size: int | None = None,
    check_every: float | None = None,
    throttle: Throttle | None = None,
    dashboard: Dashboard | None = None,
) -> FastAPI:
    """Build the app for a database (default: the configured one). ``check_every``:
    seconds between two checks of the read replica's lag (default: the router's);
    ``throttle`` counts failed sign-ins (default: a new one, per process);
    ``dashboard``: pages to serve at / (:func:`aicrm.server.create_app` gives the web
    dashboard's)."""
    where = where or target()
    size = pool_size or default_pool_size()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Behind a transaction pooler: no server-side prepared statements (connect_kwargs).
        kwargs = {"application_name": "aicrm api", "autocommit": True, **where.connect_kwargs()}
        pool: ConnectionPool[Connection] = ConnectionPool(
            where.conninfo, min_size=min(2, size), max_size=size, kwargs=kwargs, open=False
        )
        # The hot path (one record by id) reads on async connections: no worker thread.
        async_pool: AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]] = AsyncConnectionPool(
            where.conninfo, min_size=1, max_size=size, kwargs=kwargs, open=False
        )
        pool.open(wait=True, timeout=30)
        try:
            await async_pool.open(wait=True, timeout=30)
        except BaseException:
            pool.close()
            raise
        app.state.pool = pool
        app.state.async_pool = async_pool
        app.state.batchers = {}
        app.state.read_pool, app.state.router = replica_pool(where, size, check_every)
        try:
            yield
        finally:
            await async_pool.close()
            pool.close()
            if app.state.read_pool is not None:
                app.state.read_pool.close()
                app.state.router.close()

    app = FastAPI(
        title="aicrm",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package by aicrm.api._docs, not from a CDN
        redoc_url=None,
    )
    # The last added is the outermost: every answer, a 413 or a 429 too, gets the headers.
    app.add_middleware(BodyLimit, limit=JSON_BODY_LIMIT)
    page = dashboard.refusal_page if dashboard is not None else None
    app.add_middleware(SignInThrottle, throttle=throttle or Throttle(), page=page)
    app.add_middleware(SecurityHeaders)
    app.state.database = where.describe()
    problems.install(app)
    # One level of inclusion: each level costs a little on every request's routing.
    # transfer first: /leads/export must match before /leads/{lead_id}.
    for module in (meta, transfer, leads, clients, contacts, reports, ai):
        app.include_router(module.router, prefix="/api")
    # issue #17: activities, owners and the rules that assign them
    for module in (activity_routes, user_routes, assignment_rules):
        app.include_router(module.router, prefix="/api")
    if dashboard is not None:
        app.include_router(dashboard.router)
    app.include_router(docs.router)
    # The hot path, reading one record by id, is routed before everything else: the
    # documented route functions, mounted a second time as plain routes (reads.fast_route);
    # so is the timeline of a lead or client (timelines.fast_route).
    app.router.routes[0:0] = [
        reads.fast_route(leads.router, leads.get_lead, "/api"),
        reads.fast_route(clients.router, clients.get_client, "/api"),
        reads.fast_route(contacts.router, contacts.get_contact, "/api"),
        timelines.fast_route(activity_routes.router, activity_routes.lead_timeline, "/api"),
        timelines.fast_route(activity_routes.router, activity_routes.client_timeline, "/api"),
    ]
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class BodyLimit:
    """Refuses (413, as a problem) a request body over ``limit`` bytes: at once when
    Content-Length says so, else as soon as the bytes received pass it. The CSV
    imports (paths ending in /import) stream to disk under their own limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].endswith("/import"):
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared.isdigit() and int(declared) > self.limit:
            detail = f"The request body is larger than {self.limit:,} bytes."
            response = problems.problem(413, "content-too-large", "Content too large", detail)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise StarletteHTTPException(413, "Content too large")
            return message

        await self.app(scope, limited, send)


def content_length(scope: Scope) -> str:
    """The request's first Content-Length header, as :class:`starlette.datastructures.Headers`
    would give it ("" when there is none), from one pass over the raw headers: every
    request asks, and most have none."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared: str = value.decode("latin-1")
            return declared
    return ""


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with error responses in application/problem+json only."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if code[:1] in "45" and problems.MEDIA_TYPE in content:
                    content.pop("application/json", None)
                if code == "422":
                    response["description"] = "Invalid input; `errors` names each field."
                    response["content"] = {
                        problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }
    app.openapi_schema = document
    return document
