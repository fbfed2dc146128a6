"""Reusable dependencies: a pooled connection, the caller's API key by scope, ETags.

Connections come from the app's pool in autocommit mode: a read is one statement
and one round trip; reads that may lag a little take :data:`ReadDb` (the read
replica's pool while it is fresh enough, docs/deployment.md); every write runs in
``session.transaction`` (which the library opens itself where it must), so nothing
is left half-done.

Authentication follows :func:`aicrm.apikeys.authenticate` (same token format, hash
and refusals) but refreshes ``last_used_at`` only when it is more than a minute old,
so a busy key costs one indexed read per request, not a write.

Reading one record by id (``GET /api/leads/{id}`` and its siblings) is the hot
path: :func:`read_record` checks the key and reads the record in ONE statement on
an async connection (no worker thread, binary rows), which the reads arriving in the
same turn of the event loop share (:mod:`aicrm.api.batch`). The key is still checked
on every request, before anything is answered; the record read alongside is
discarded when the key is refused.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from aicrm import apikeys
from aicrm.api import batch
from aicrm.apikeys import ApiKey
from aicrm.crm import store
from aicrm.crm.records import Record, jsonable
from aicrm.crm.store import Stale
from aicrm.db import Connection, Router
from aicrm.errors import ConnectionFailed, NotFound, Unauthorized

POOL_TIMEOUT = 10.0  # seconds a request waits for a free connection (then 503)
TOUCH_EVERY = timedelta(minutes=1)
TOUCH = """
UPDATE api_keys SET last_used_at = now()
WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""
REFUSED = "A valid API key is required (header: Authorization: Bearer KEY)."

# For the OpenAPI document only (the check below reads the headers itself).
bearer = HTTPBearer(auto_error=False, description="An API key: `aicrm apikey create`.")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def busy() -> ConnectionFailed:
    return ConnectionFailed(
        f"No database connection became free within {POOL_TIMEOUT:g} s; the server is "
        "overloaded or the database is down. Try again later."
    )


def get_pool(request: Request) -> ConnectionPool[Connection]:
    pool: ConnectionPool[Connection] = request.app.state.pool
    return pool


def get_conn(request: Request) -> Iterator[Connection]:
    """A connection from the pool for one request; returned (rolled back if needed) after."""
    try:
        conn = get_pool(request).getconn(timeout=POOL_TIMEOUT)
    except PoolTimeout:
        raise busy() from None
    try:
        yield conn
    finally:
        get_pool(request).putconn(conn)


Db = Annotated[Connection, Depends(get_conn)]

READ_POOL_TIMEOUT = 2.0  # seconds a read waits for a replica connection (then: primary)


def get_read_conn(request: Request, primary: Db) -> Iterator[Connection]:
    """A connection for a read that may lag a little (lists, search, export, reports,
    analysis, the dashboard's lists): the replica's while the router lets it
    (:class:`aicrm.db.Router`), else ``primary``, the request's own connection (the
    key check's: FastAPI gives a request one ``Db``, so a request never waits for a
    second connection of the pool it already holds one of)."""
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


ReadDb = Annotated[Connection, Depends(get_read_conn)]


def token_of(request: Request) -> str | None:
    """The key a request presents. The API (/api) and MCP (/mcp) take only the
    documented headers; the dashboard's cookie counts only on the dashboard's pages,
    whose forms check their Origin (a cross-site form or fetch could otherwise use it)."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if request.url.path.startswith(("/api/", "/mcp")):
        return request.headers.get("x-api-key")
    return request.headers.get("x-api-key") or request.cookies.get("aicrm_key")


def credentials(token: str | None) -> tuple[str, str]:
    """A well-formed token and its lookup prefix; :class:`Unauthorized` otherwise."""
    match = apikeys.TOKEN.match(token or "")
    if not match or token is None:
        raise Unauthorized(REFUSED)
    return token, match.group(1)


def live_key(row: tuple[Any, ...] | None, token: str) -> ApiKey:
    """The key of a row of ``KEY_COLUMNS`` if ``token`` is its secret and it is not
    revoked; :class:`Unauthorized` (one message for every reason) otherwise."""
    if row is None or row[0] is None or row[6]:
        raise Unauthorized(REFUSED)
    if not hmac.compare_digest(row[7], apikeys._digest(token)):
        raise Unauthorized(REFUSED)
    return ApiKey(*row[:7])


def needs_touch(key: ApiKey) -> bool:
    """Whether ``last_used_at`` is due (it is written at most once a minute)."""
    return key.last_used_at is None or key.last_used_at < datetime.now(UTC) - TOUCH_EVERY


def authenticate(conn: Connection, token: str | None) -> ApiKey:
    """The live key a token belongs to; :class:`Unauthorized` for a missing, malformed,
    unknown or revoked one (one message for all). Touches ``last_used_at`` at most
    once a minute."""
    token, prefix = credentials(token)
    key = live_key(conn.execute(apikeys.BY_PREFIX, (prefix,)).fetchone(), token)
    if needs_touch(key):
        conn.execute(TOUCH, (key.id,))
    return key


def require_scope(scope: str) -> Callable[..., ApiKey]:
    """A dependency that authenticates the caller and checks ``scope`` (401, 403)."""

    def check(
        request: Request,
        conn: Db,
        _bearer: Annotated[Any, Depends(bearer)],
        _header: Annotated[Any, Depends(api_key_header)],
    ) -> ApiKey:
        key = authenticate(conn, token_of(request))
        apikeys.require(key, scope)
        request.state.api_key = key
        return key

    return check


ReadKey = Annotated[ApiKey, Depends(require_scope("read"))]
WriteKey = Annotated[ApiKey, Depends(require_scope("write"))]
AdminKey = Annotated[ApiKey, Depends(require_scope("admin"))]


# --- ETags ------------------------------------------------------------------------
# A record's ETag is its id and its updated_at in microseconds since the epoch:
# exact, so it maps back to the ``expected_updated_at`` of store.update.

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
TAG = re.compile(r'(W/)?"([^"]*)"')


def etag(record_id: uuid.UUID | str, updated_at: datetime) -> str:
    return f'"{record_id}:{(updated_at - EPOCH) // MICROSECOND}"'


def etag_of(record: dict[str, Any]) -> str | None:
    """The ETag of a record given as a dict (``to_dict()``), if it has the fields."""
    try:
        return etag(record["id"], datetime.fromisoformat(str(record["updated_at"])))
    except (KeyError, ValueError, TypeError):
        return None


def versions(header: str, record_id: uuid.UUID) -> set[datetime]:
    """The versions of ``record_id`` that a (strong) If-Match header names."""
    found = set()
    for weak, value in TAG.findall(header):
        name, _, micros = value.rpartition(":")
        if weak or name != str(record_id) or not micros.isdigit() or len(micros) > 18:
            continue
        try:
            found.add(EPOCH + int(micros) * MICROSECOND)
        except OverflowError:
            continue
    return found


def expected_version(
    conn: Connection, cls: type[Record], record_id: uuid.UUID, if_match: str | None
) -> datetime | None:
    """The ``updated_at`` an If-Match header requires, for ``store.update``'s check.

    None without the header or with ``*``. :class:`Stale` (412) when it names no
    version of this record, or several of which none is current.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    named = versions(if_match, record_id)
    if len(named) == 1:
        return named.pop()
    current = store.get(conn, cls, record_id)
    if current_version(current) in named:
        return current_version(current)
    noun = cls.TABLE[:-1]
    raise Stale(
        f"If-Match does not name the current version of the {noun} {record_id}; read it "
        "again (its ETag is in the response) and reapply your change.",
        details={"conflicting": current.to_dict()},
    )


def current_version(record: Record) -> datetime:
    value: datetime = getattr(record, "updated_at")  # noqa: B009 - every record has it
    return value


def check_version(record: Record, expected: datetime | None) -> None:
    """:class:`Stale` when ``record`` is not at the ``expected`` version."""
    if expected is not None and current_version(record) != expected:
        noun = record.TABLE[:-1]
        raise Stale(
            f"The {noun} {getattr(record, 'id')} changed since you read it; read it again "  # noqa: B009
            "and reapply your change.",
            details={"conflicting": record.to_dict()},
        )


# --- the hot path: a record by id, with the key check, in one statement ---------------

KEY_COLUMNS = ("id", "name", "scope", "prefix", "created_at", "last_used_at", "revoked_at",
               "key_hash")  # fmt: skip
# real (float4) columns travel as text: a binary float4 widened to a Python float
# shows float32 noise (0.30000001192092896) where the text form is 0.3. jsonb columns
# travel as text too and are spliced into the response as PostgreSQL wrote them:
# parsing them into dicts only to serialise them again was a third of the read's CPU.
FLOAT4 = ("ai_score",)
JSONB = ("ai_annotations", "attributes")
_READS: dict[str, bytes] = {}


def _column(name: str) -> sql.Composable:
    cast = sql.SQL("::text") if name in FLOAT4 or name in JSONB else sql.SQL("")
    return sql.SQL("r.{}{}").format(sql.Identifier(name), cast)


def read_statement(cls: type[Record]) -> bytes:
    """The batched read of ``cls`` by id with the key check (:func:`batch.statement`)."""
    if cls.TABLE not in _READS:
        _READS[cls.TABLE] = batch.statement(
            cls.TABLE,
            sql.SQL(", ").join(sql.SQL("k.{}").format(sql.Identifier(c)) for c in KEY_COLUMNS),
            sql.SQL(", ").join(_column(c) for c in cls.COLUMNS),
        )
    return _READS[cls.TABLE]


def batcher(request: Request, cls: type[Record]) -> batch.Batcher:
    """The app's coalescing reader of ``cls`` (one per table and worker process)."""
    batchers: dict[str, batch.Batcher] = request.app.state.batchers
    if cls.TABLE not in batchers:
        batchers[cls.TABLE] = batch.Batcher(
            get_async_pool(request), read_statement(cls), POOL_TIMEOUT
        )
    return batchers[cls.TABLE]


def get_async_pool(request: Request) -> AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]:
    pool: AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]] = request.app.state.async_pool
    return pool


async def read_record(
    request: Request, cls: type[Record], record_id: uuid.UUID, scope: str = "read"
) -> tuple[bytes, str]:
    """The record as JSON (``to_dict()``'s members) and its ETag, after checking the
    caller's key (401, 403); 404 when there is none. One statement, shared with the
    other reads of this turn of the event loop."""
    token, prefix = credentials(token_of(request))
    width = len(KEY_COLUMNS)
    try:
        row = await batcher(request, cls).read(record_id, prefix)
        key = live_key(row, token)
        apikeys.require(key, scope)
        if needs_touch(key):
            async with get_async_pool(request).connection(timeout=POOL_TIMEOUT) as conn:
                await conn.execute(TOUCH, (key.id,))
    except PoolTimeout:
        raise busy() from None
    request.state.api_key = key
    if row[width] is None:
        raise NotFound(f"No {cls.TABLE[:-1]} has id {record_id}.")
    values = dict(zip(cls.COLUMNS, row[width:], strict=True))
    spliced = ""
    for name in JSONB:
        if name in values:
            text = values.pop(name)
            spliced += f',"{name}":{"null" if text is None else text}'
    for name in FLOAT4:
        if values.get(name) is not None:
            values[name] = float(values[name])
    tag = etag(values["id"], values["updated_at"])
    scalars = json.dumps(
        {name: jsonable(value) for name, value in values.items()},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return (scalars[:-1] + spliced + "}").encode(), tag


async def check_key(request: Request, scope: str = "read") -> ApiKey:
    """The caller's key, checked (401, 403) on an async connection: one round trip."""
    token, prefix = credentials(token_of(request))
    try:
        async with get_async_pool(request).connection(timeout=POOL_TIMEOUT) as conn:
            cursor = conn.cursor(binary=True)
            await cursor.execute(apikeys.BY_PREFIX, (prefix,))
            key = live_key(await cursor.fetchone(), token)
            apikeys.require(key, scope)
            if needs_touch(key):
                await conn.execute(TOUCH, (key.id,))
    except PoolTimeout:
        raise busy() from None
    request.state.api_key = key
    return key


# The security requirement of routes that check the key themselves (read_record).
SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}, {"APIKeyHeader": []}]}
