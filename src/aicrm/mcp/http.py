"""The MCP server over the SDK's streamable HTTP transport, at ``/mcp`` in ``aicrm serve``.

The same tools as over stdio (:mod:`aicrm.mcp._tools`), under the key each HTTP
request presents (``Authorization: Bearer KEY`` or ``X-API-Key``), with the API's
scopes: a read key reads, a write key also changes data. The key is checked twice: by
:class:`Endpoint` before the request reaches the SDK (no key, a wrong or revoked one:
401, counted by the sign-in throttle), and again with its scope by every tool call,
on a connection of the app's pool (:class:`PoolBackend`).

The transport is stateless and answers in JSON: every request stands alone, so any
worker of ``aicrm serve --workers N`` can answer it and nothing is kept between
requests. The dashboard's cookie is never accepted here (:func:`aicrm.api.auth.token_of`),
so a page on another site cannot call the tools with a signed-in browser; the SDK's
DNS-rebinding check is therefore off, which also lets the server answer under any
host name it is deployed behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aicrm import apikeys
from aicrm.api import auth, connections, problems
from aicrm.apikeys import ApiKey
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import AicrmError, Unauthorized
from aicrm.mcp._backend import CALLER
from aicrm.mcp._server import build_server

PATH = "/mcp"
REFUSED = (
    "A valid API key is required: send it as 'Authorization: Bearer KEY'. Create one with "
    "'aicrm apikey create NAME --scope read' (or write, to change data)."
)


class PoolBackend:
    """The tools' connections for MCP over HTTP: one from the app's pool per call, under
    the key of the call's HTTP request (:data:`aicrm.mcp._backend.CALLER`)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @contextmanager
    def call(self, scope: str, lagging_ok: bool = False) -> Iterator[tuple[Connection, ApiKey]]:
        """A pooled connection and the caller's key, checked for ``scope``.

        Raises :class:`Unauthorized` for a missing, wrong or revoked key,
        :class:`aicrm.errors.Forbidden` for too narrow a scope and
        :class:`aicrm.errors.ConnectionFailed` when no connection becomes free."""
        pool: ConnectionPool[Connection] = self.app.state.pool
        try:
            conn = pool.getconn(timeout=connections.POOL_TIMEOUT)
        except PoolTimeout:
            raise connections.busy() from None
        try:
            # the key check's and the tools' database errors leave as aicrm errors
            with translated():
                try:
                    key = auth.authenticate(conn, CALLER.get())
                except Unauthorized:
                    raise Unauthorized(REFUSED) from None
                apikeys.require(key, scope)
                yield conn, key
        finally:
            pool.putconn(conn)


class Endpoint:
    """The ASGI endpoint at ``/mcp``: refuses a request without a valid key (401, a
    problem document), then hands it to the SDK's session manager."""

    def __init__(self, transport: StreamableHTTPASGIApp) -> None:
        self.transport = transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            await auth.check_key(request, "read")
        except AicrmError as exc:  # a 401 is counted by the sign-in throttle
            await problems.from_error(exc, request.method)(scope, receive, send)
            return
        await self.transport(scope, receive, send)


def mount(app: FastAPI) -> None:
    """Serve the MCP tools at ``/mcp`` in ``app``, starting the SDK's session manager
    with the app (after its pools, which the tools use)."""
    server = build_server(PoolBackend(app))
    server.streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    manager = server.session_manager
    app.router.routes.append(
        Route(
            PATH,
            endpoint=Endpoint(StreamableHTTPASGIApp(manager)),
            methods=["GET", "POST", "DELETE"],
        )
    )
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state, manager.run():
            yield state

    app.router.lifespan_context = lifespan
