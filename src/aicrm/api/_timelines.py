"""The timeline of a lead or a client over the API (issue #17), in the way of the read
by id (:mod:`aicrm.api._reads`): the key check, the record's existence and the page in
ONE statement on an async connection, the page's JSON written by PostgreSQL
(:data:`aicrm.crm.timeline.PAGE_JSON`, over the library's own TIMELINE query) and sent
on as bytes, never parsed in Python.

The page is computed only for a live key (its hash and no revocation, in the
statement): knowing a key's prefix does not buy anyone the work of a page. The key is
then checked in Python as every request's is (401, 403), before anything is answered;
then 404, then a cursor aicrm did not produce (422): the library's order.

The documented route functions (``lead_timeline``, ``client_timeline`` in
:mod:`aicrm.api.routes.activities`) answer through :func:`page_response`;
:func:`fast_route` mounts each again as a plain Starlette route, routed FIRST, for the
requests whose query string is plainly valid; any other falls through to FastAPI's
route, its validation and its 422s.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from psycopg import sql
from psycopg_pool import PoolTimeout
from starlette.routing import Match, Route
from starlette.types import Scope

from aicrm import apikeys
from aicrm.api._reads import JSON, KEY_COLUMNS
from aicrm.api.auth import TOUCH, credentials, live_key, needs_touch, token_of
from aicrm.api.connections import POOL_TIMEOUT, busy, get_async_pool
from aicrm.crm import timeline
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput, NotFound

# {keys}: the key's columns (reads.KEY_COLUMNS); {table}: leads or clients; {page}:
# PAGE_JSON over TIMELINE. The page is a scalar subquery (an InitPlan), which
# PostgreSQL runs only when the CASE reaches it.
STATEMENT = """
SELECT {keys},
       EXISTS (SELECT FROM {table} r WHERE r.id = %(record)s),
       CASE WHEN k.key_hash = %(digest)s AND k.revoked_at IS NULL THEN ({page}) END
FROM (VALUES (1)) AS one (n) LEFT JOIN api_keys k ON k.prefix = %(prefix)s
"""
STATEMENTS: dict[str, bytes] = {}
QUERY_LENGTH = 400  # characters of a query string the fast route looks at
CURSOR_LENGTH = 300  # as the documented route's cursor parameter
LIMIT = re.compile(r"[1-9][0-9]{0,2}")

PageOf = Callable[[uuid.UUID, Request, int, str | None], Awaitable[Response]]


def statement(table: str) -> bytes:
    """The one statement of a page of ``table``'s timeline (leads, clients)."""
    if table not in STATEMENTS:
        _, column = timeline.TABLES[table]
        STATEMENTS[table] = (
            sql.SQL(STATEMENT)
            .format(
                keys=sql.SQL(", ").join(
                    sql.SQL("k.{}").format(sql.Identifier(c)) for c in KEY_COLUMNS
                ),
                table=sql.Identifier(table),
                page=sql.SQL(timeline.PAGE_JSON).format(timeline=timeline.query(column)),
            )
            .as_bytes(None)
        )
    return STATEMENTS[table]


async def page_response(
    request: Request, table: str, record_id: uuid.UUID, limit: int, cursor: str | None
) -> Response:
    """A page of the timeline of a lead or client (``table``), as the library pages it
    (:func:`aicrm.crm.timeline.timeline`), after checking the caller's key (401, 403);
    404 for an unknown record, 422 for a cursor aicrm did not produce."""
    token, prefix = credentials(token_of(request))
    refused: InvalidInput | None = None
    try:
        params = timeline.parameters(table, record_id, cursor, limit)
        params["digest"] = apikeys.digest(token)
    except InvalidInput as exc:  # told after the key and the record, as the library does
        refused = exc
        params = timeline.parameters(table, record_id, None, limit)
        params["digest"] = None  # no page
    params["prefix"] = prefix
    width = len(KEY_COLUMNS)
    try:
        with translated():
            async with get_async_pool(request).connection(timeout=POOL_TIMEOUT) as conn:
                found = conn.cursor(binary=True)
                await found.execute(statement(table), params)
                row = await found.fetchone()
                key = live_key(row, token)
                apikeys.require(key, "read")
                if needs_touch(key):
                    await conn.execute(TOUCH, (key.id,))
    except PoolTimeout:
        raise busy() from None
    request.state.api_key = key
    assert row is not None  # live_key refuses a missing row
    if not row[width]:
        raise NotFound(f"No {table[:-1]} has id {record_id}.")
    if refused is not None:
        raise refused
    body: bytes = row[width + 1]
    return Response(body, media_type=JSON)


def plain_query(scope: Scope) -> tuple[int, str | None] | None:
    """``limit`` and ``cursor`` of a query string that plainly satisfies the documented
    route's parameters (each at most once, limit 1..MAX_PAGE in plain digits, a cursor
    of 1..300 characters, nothing else); None for any other, left to FastAPI."""
    raw: bytes = scope.get("query_string", b"")
    if len(raw) > QUERY_LENGTH:
        return None
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    found = dict(pairs)
    if len(found) != len(pairs) or not found.keys() <= {"limit", "cursor"}:
        return None
    limit = found.get("limit", "50")
    cursor = found.get("cursor")
    if not LIMIT.fullmatch(limit) or int(limit) > timeline.MAX_PAGE:
        return None
    if cursor is not None and not 1 <= len(cursor) <= CURSOR_LENGTH:
        return None
    return int(limit), cursor


class PlainRoute(Route):
    """A route that matches only a request whose query string :func:`plain_query`
    takes; it hands the parsed parameters on in the scope (``aicrm.query``)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.FULL:
            return match, child
        query = plain_query(scope)
        if query is None:
            return Match.NONE, {}
        return match, {**child, "aicrm.query": query}


def fast_route(router: APIRouter, function: PageOf, prefix: str = "") -> Route:
    """The documented route ``function`` (``GET <prefix><path>``, ending in
    ``/{id}/timeline``; taking the id, the request, the limit and the cursor) as a plain
    Starlette route to be routed FIRST: the same answers (both call ``function``; same
    middleware, exception handlers and problems) without FastAPI's routing walk and
    parameter solving. A non-UUID id or a query string that is not plainly valid falls
    through to the documented route."""
    (documented,) = (r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is function)
    path, count = re.subn(r"\{(\w+)\}/", r"{\1:uuid}/", documented.path)
    assert count == 1 and documented.methods == {"GET"}, documented.path
    parameter = next(iter(documented.param_convertors))

    async def read(request: Request) -> Response:
        limit, cursor = request.scope["aicrm.query"]
        record_id: uuid.UUID = request.path_params[parameter]
        return await function(record_id, request, limit, cursor)

    return PlainRoute(prefix + path, read, methods=["GET"], include_in_schema=False)
