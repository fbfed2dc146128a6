"""Reading one record by id, the API's hot path: the key check and the read in ONE
statement, on an async connection (no worker thread, binary rows), shared with the
reads arriving in the same turn of the event loop (:mod:`aicrm.api._batch`).

The key is still checked on every request, before anything is answered; the record
read alongside is discarded when the key is refused. The read goes to the primary
(never the replica): a client reads its own writes.

The documented route functions (``get_lead``, ``get_client``, ``get_contact`` in
:mod:`aicrm.api.routes`) answer these reads, through :func:`get_response`.
:func:`fast_route` also mounts each of them as a plain Starlette route that the app
routes FIRST: FastAPI's routing (a walk over every route before it) and parameter
solving cost about as much CPU as the read itself.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from psycopg import sql
from psycopg_pool import PoolTimeout
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aicrm import apikeys
from aicrm.api import _batch as batch
from aicrm.api._etags import etag, not_modified
from aicrm.api.auth import TOUCH, credentials, live_key, needs_touch, token_of
from aicrm.api.connections import POOL_TIMEOUT, busy, get_async_pool
from aicrm.crm.records import Record, jsonable
from aicrm.db.errors import translated
from aicrm.errors import NotFound

JSON = "application/json"
HEADER_LIMIT = 1000  # characters of an If-Match / If-None-Match header

KEY_COLUMNS = ("id", "name", "scope", "prefix", "created_at", "last_used_at", "revoked_at",
               "key_hash")  # fmt: skip
# real (float4) columns travel as text: a binary float4 widened to a Python float
# shows float32 noise (0.30000001192092896) where the text form is 0.3. jsonb columns
# travel as text too and are spliced into the response as PostgreSQL wrote them:
# parsing them into dicts only to serialise them again was a third of the read's CPU.
FLOAT4 = ("ai_score",)
JSONB = ("ai_annotations", "attributes")
STATEMENTS: dict[str, bytes] = {}

ReadById = Callable[[uuid.UUID, Request, str | None], Awaitable[Response]]


def column(name: str) -> sql.Composable:
    """A record's column as the batched read selects it (see :data:`FLOAT4`, :data:`JSONB`)."""
    cast = sql.SQL("::text") if name in FLOAT4 or name in JSONB else sql.SQL("")
    return sql.SQL("r.{}{}").format(sql.Identifier(name), cast)


def read_statement(cls: type[Record]) -> bytes:
    """The batched read of ``cls`` by id with the key check (:func:`batch.statement`)."""
    if cls.TABLE not in STATEMENTS:
        STATEMENTS[cls.TABLE] = batch.statement(
            cls.TABLE,
            sql.SQL(", ").join(sql.SQL("k.{}").format(sql.Identifier(c)) for c in KEY_COLUMNS),
            sql.SQL(", ").join(column(c) for c in cls.COLUMNS),
        )
    return STATEMENTS[cls.TABLE]


def batcher(request: Request, cls: type[Record]) -> batch.Batcher:
    """The app's coalescing reader of ``cls`` (one per table and worker process)."""
    batchers: dict[str, batch.Batcher] = request.app.state.batchers
    if cls.TABLE not in batchers:
        batchers[cls.TABLE] = batch.Batcher(
            get_async_pool(request), read_statement(cls), POOL_TIMEOUT
        )
    return batchers[cls.TABLE]


async def read_record(
    request: Request, cls: type[Record], record_id: uuid.UUID, scope: str = "read"
) -> tuple[bytes, str]:
    """The record as JSON (``to_dict()``'s members) and its ETag, after checking the
    caller's key (401, 403); 404 when there is none. One statement, shared with the
    other reads of this turn of the event loop."""
    token, prefix = credentials(token_of(request))
    width = len(KEY_COLUMNS)
    try:
        with translated():
            row = await batcher(request, cls).read(record_id, prefix)
        key = live_key(row, token)
        apikeys.require(key, scope)
        if needs_touch(key):
            with translated():
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


async def get_response(
    request: Request, cls: type[Record], record_id: uuid.UUID, if_none_match: str | None
) -> Response:
    """One record with its ETag, or a 304 when If-None-Match names that ETag."""
    body, tag = await read_record(request, cls, record_id)
    if not_modified(if_none_match, tag):
        return Response(status_code=304, headers={"ETag": tag})
    return Response(body, media_type=JSON, headers={"ETag": tag})


class FastRead:
    """The ASGI endpoint of a :func:`fast_route`: the documented route ``function``,
    called with the id from the path, the request and If-None-Match.

    An ASGI endpoint rather than a request/response function: Starlette wraps a
    function in a second exception-handling layer of its own (a Request, two closures
    and one more hop for each message sent, on every read); what this one raises is
    answered by the app's exception handlers instead, the same ones (see
    :func:`aicrm.api.problems.install`), with the same documents."""

    def __init__(self, function: ReadById, parameter: str) -> None:
        self.function = function
        self.parameter = parameter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and len(if_none_match) > HEADER_LIMIT:
            raise RequestValidationError(
                [{"loc": ("header", "if-none-match"), "type": "value_error",
                  "msg": f"At most {HEADER_LIMIT} characters."}]
            )  # fmt: skip
        record_id: uuid.UUID = scope["path_params"][self.parameter]
        response = await self.function(record_id, request, if_none_match)
        await response(scope, receive, send)


def fast_route(router: APIRouter, function: ReadById, prefix: str = "") -> Route:
    """The documented route ``function`` (``GET <prefix><router's path>/{id}``, taking
    the id, the request and If-None-Match) as a plain Starlette route, to be routed FIRST.

    It answers exactly what the documented FastAPI route does (both call ``function``;
    same middleware, exception handlers, problems, ETags and 304s), without FastAPI's
    routing walk and parameter solving (:class:`FastRead`). It matches only a UUID
    (Starlette's convertor: any case, dashes optional, as the FastAPI route accepts);
    anything else falls through to the FastAPI route, which answers 422 and carries the
    OpenAPI description.
    """
    (documented,) = (r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is function)
    path, name = re.subn(r"\{(\w+)\}$", r"{\1:uuid}", documented.path)
    assert name == 1 and documented.methods == {"GET"}, documented.path
    parameter = next(iter(documented.param_convertors))
    endpoint = FastRead(function, parameter)
    return Route(prefix + path, endpoint, methods=["GET"], include_in_schema=False)
