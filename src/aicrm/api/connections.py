"""Database connections for a request: the app's pools, in autocommit mode.

A read is one statement and one round trip; reads that may lag a little take
:func:`get_read_conn` (the read replica's pool while it is fresh enough,
docs/deployment.md); every write runs in ``session.transaction`` (which the library
opens itself where it must), so nothing is left half-done. The pools are opened and
closed by the app's lifespan (:func:`aicrm.api.create_app`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from aicrm.db import Connection, Router
from aicrm.db.errors import translated
from aicrm.errors import ConnectionFailed

POOL_TIMEOUT = 10.0  # seconds a request waits for a free connection (then 503)
READ_POOL_TIMEOUT = 2.0  # seconds a read waits for a replica connection (then: primary)

AsyncPool = AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]


def busy() -> ConnectionFailed:
    """The error of a request that waited :data:`POOL_TIMEOUT` for a connection (503)."""
    return ConnectionFailed(
        f"No database connection became free within {POOL_TIMEOUT:g} s; the server is "
        "overloaded or the database is down. Try again later."
    )


def get_pool(request: Request) -> ConnectionPool[Connection]:
    """The app's pool of connections to the primary."""
    pool: ConnectionPool[Connection] = request.app.state.pool
    return pool


def get_async_pool(request: Request) -> AsyncPool:
    """The app's pool of async connections to the primary (the reads by id, key checks)."""
    pool: AsyncPool = request.app.state.async_pool
    return pool


def get_conn(request: Request) -> Iterator[Connection]:
    """A connection from the pool for one request; returned (rolled back if needed) after.
    Raises :class:`ConnectionFailed` when none becomes free in time. The request's
    boundary: a database error its route (or :func:`get_read_conn`) raises leaves as an
    :class:`aicrm.AicrmError` (:func:`aicrm.db.errors.translated`)."""
    try:
        conn = get_pool(request).getconn(timeout=POOL_TIMEOUT)
    except PoolTimeout:
        raise busy() from None
    try:
        with translated():
            yield conn
    finally:
        get_pool(request).putconn(conn)


def get_read_conn(
    request: Request, primary: Annotated[Connection, Depends(get_conn)]
) -> Iterator[Connection]:
    """A connection for a read that may lag a little (lists, search, export, reports,
    analysis, the dashboard's lists): the replica's while the router lets it
    (:class:`aicrm.db.Router`), else ``primary``, the request's own connection (the
    key check's: FastAPI gives a request one connection of :func:`get_conn`, so a
    request never waits for a second connection of the pool it already holds one of)."""
    router: Router | None = request.app.state.router
    if router is None or not router.use_replica():
        yield primary
        return
    read_pool: ConnectionPool[Connection] = request.app.state.read_pool
    try:
        conn = read_pool.getconn(timeout=READ_POOL_TIMEOUT)
    except PoolTimeout:
        router.failed(f"no connection to it within {READ_POOL_TIMEOUT:g} s")
        yield primary
        return
    try:
        yield conn
    finally:
        read_pool.putconn(conn)
