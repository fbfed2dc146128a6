"""Who is calling: the API key a request presents, checked, and its scope.

Authentication follows :func:`aicrm.apikeys.authenticate` (same token format, hash
and refusals) but refreshes ``last_used_at`` only when it is more than a minute old,
so a busy key costs one indexed read per request, not a write. The reads by id check
the key in the same statement as the read (:mod:`aicrm.api._reads`), with
:func:`credentials` and :func:`live_key` from here.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from psycopg_pool import PoolTimeout

from aicrm import apikeys
from aicrm.api.connections import POOL_TIMEOUT, busy, get_async_pool, get_conn
from aicrm.apikeys import ApiKey
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import Unauthorized

TOUCH_EVERY = timedelta(minutes=1)
TOUCH = """
UPDATE api_keys SET last_used_at = now()
WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""
REFUSED = "A valid API key is required (header: Authorization: Bearer KEY)."

# For the OpenAPI document only (the check below reads the headers itself).
bearer = HTTPBearer(auto_error=False, description="An API key: `aicrm apikey create`.")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

# The security requirement of routes that check the key themselves (reads by id, ping).
SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}, {"APIKeyHeader": []}]}


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
    """The key of a row of ``apikeys.BY_PREFIX``'s columns if ``token`` is its secret and
    it is not revoked; :class:`Unauthorized` (one message for every reason) otherwise."""
    if row is None or row[0] is None or row[6]:
        raise Unauthorized(REFUSED)
    if not hmac.compare_digest(row[7], apikeys.digest(token)):
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
        conn: Annotated[Connection, Depends(get_conn)],
        _bearer: Annotated[Any, Depends(bearer)],
        _header: Annotated[Any, Depends(api_key_header)],
    ) -> ApiKey:
        key = authenticate(conn, token_of(request))
        apikeys.require(key, scope)
        request.state.api_key = key
        return key

    return check


async def check_key(request: Request, scope: str = "read") -> ApiKey:
    """The caller's key, checked (401, 403) on an async connection: one round trip."""
    token, prefix = credentials(token_of(request))
    try:
        with translated():
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
