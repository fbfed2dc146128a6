"""Reusable dependencies: a pooled connection, and the caller's API key by scope."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from aicrm import apikeys
from aicrm.apikeys import ApiKey
from aicrm.db import Connection
from aicrm.errors import ConnectionFailed


def get_pool(request: Request) -> ConnectionPool[Connection]:
    pool: ConnectionPool[Connection] = request.app.state.pool
    return pool


def get_conn(request: Request) -> Iterator[Connection]:
    """A connection from the pool for one request; returned (rolled back if needed) after."""
    try:
        with get_pool(request).connection(timeout=10) as conn:
            yield conn
    except TimeoutError:
        raise ConnectionFailed(
            "No database connection became free within 10 s; the server is overloaded or the "
            "database is down."
        ) from None


Db = Annotated[Connection, Depends(get_conn)]


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key") or request.cookies.get("aicrm_key")


def require_scope(scope: str) -> Callable[[Request, Connection], ApiKey]:
    """A dependency that authenticates the caller and checks ``scope`` (401, 403)."""

    def check(request: Request, conn: Db) -> ApiKey:
        with conn.transaction():
            key = apikeys.authenticate(conn, _token(request))
        apikeys.require(key, scope)
        request.state.api_key = key
        return key

    return check


ReadKey = Annotated[ApiKey, Depends(require_scope("read"))]
WriteKey = Annotated[ApiKey, Depends(require_scope("write"))]
AdminKey = Annotated[ApiKey, Depends(require_scope("admin"))]
