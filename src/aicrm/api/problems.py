"""Errors as RFC 9457 problem details: one shape, built by one helper.

Every error response is ``application/problem+json`` with ``type``, ``title``,
``status`` and ``detail``; validation errors add ``errors`` (each naming its field
and where it was: body, query, path, header), conflicts and stale updates add
``conflicting`` (the record in the way). Whatever goes wrong, the client gets this
shape: aicrm's errors, database errors, HTTP errors (404, 405, 413) and, should one
happen, an unexpected exception (500, logged with its traceback).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aicrm.api import _security as security
from aicrm.api._etags import etag_of
from aicrm.errors import AicrmError, Stale

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://aicrm.dev/problems/"
LOG = logging.getLogger("aicrm.api")

# The title of each kind of problem; the kind and the status are the error class's
# own (``AicrmError.problem``, ``AicrmError.http_status``: the one map, in errors.py).
TITLES = {
    "stale-update": "Stale update",
    "conflict": "Conflict",
    "not-found": "Not found",
    "invalid-input": "Invalid input",
    "unauthorized": "Unauthorized",
    "forbidden": "Forbidden",
    "database-unavailable": "Database unavailable",
    "busy": "Busy",
    # The request cannot be carried out in the database's present state (e.g. the AI
    # schema or a model is missing): nothing the client can fix by changing it.
    "not-possible": "Not possible now",
    "internal": "Internal error",
}

HTTP_KINDS = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("content-too-large", "Content too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
}


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """The one way to build an error response."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({key: value for key, value in extra.items() if value is not None})
    # The security headers here too: a 500 is answered outside the middleware stack.
    all_headers = {**security.HEADERS, **(headers or {})}
    if status == 401:
        all_headers["WWW-Authenticate"] = 'Bearer realm="aicrm"'
    # ensure_ascii: a detail may quote the client's input, which may hold lone
    # surrogates that UTF-8 cannot encode; escaped, they are harmless.
    content = json.dumps(body, default=str, separators=(",", ":")).encode()
    return Response(content, status_code=status, media_type=MEDIA_TYPE, headers=all_headers)


def from_error(exc: AicrmError, method: str = "GET") -> Response:
    extra = {key: value for key, value in exc.details.items() if key != "conflicting"}
    if "errors" in extra:  # an import's rejected rows (line, reason), not field errors
        extra["rows_rejected"] = extra.pop("errors")
    field = extra.pop("field", None)
    if field:  # the library named the invalid field (e.g. a status not in lead_statuses)
        where = "query" if method in ("GET", "HEAD") else "body"
        extra["errors"] = [{"field": field, "in": where, "message": exc.message}]
    if exc.http_status == 500:  # an error no request should meet (engine, prerequisite)
        LOG.error("unexpected aicrm error: %s", exc.message, exc_info=exc)
        return problem(500, "internal", TITLES["internal"], exc.message)
    conflicting = exc.details.get("conflicting")
    headers = {}
    if isinstance(exc, Stale) and isinstance(conflicting, dict):
        current = etag_of(conflicting)
        if current:
            headers["ETag"] = current
    return problem(exc.http_status, exc.problem, TITLES.get(exc.problem, "Error"), exc.message,
                   headers=headers, conflicting=conflicting, **extra)  # fmt: skip


def field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """One entry per invalid field: its dotted name, where it was, and why."""
    found = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else ""
        name = ".".join(loc[1:] if where else loc)
        found.append(
            {
                "field": name or where or "body",
                "in": where or "body",
                "message": str(err.get("msg", "invalid")),
            }
        )
    return found


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(AicrmError)
    async def _aicrm(request: Request, exc: AicrmError) -> Response:
        return from_error(exc, request.method)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        errors = field_errors(exc)
        named = "; ".join(f"{e['field']} ({e['in']}): {e['message']}" for e in errors[:3])
        more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
        return problem(422, "invalid-input", "Invalid input",
                       f"Invalid request: {named}{more}.", errors=errors)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot even decode (not UTF-8, not JSON
            # at all): invalid input like any other, so a 422 that names the body.
            errors = [{"field": "body", "in": "body", "message": str(exc.detail)}]
            detail = f"Invalid request: body (body): {exc.detail}."
            return problem(422, "invalid-input", "Invalid input", detail, errors=errors)
        kind, title = HTTP_KINDS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = str(exc.detail)
        if exc.status_code == 413:
            detail = "The request body is larger than this endpoint accepts."
        elif exc.status_code == 404 and detail == "Not Found":
            detail = "No such endpoint; the API is under /api (see /docs)."
        return problem(exc.status_code, kind, title, detail, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        LOG.error("unexpected error", exc_info=exc)
        detail = "The server failed to handle the request; the error was logged."
        return problem(500, "internal", "Internal error", detail)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries for these error statuses."""
    from aicrm.api._schemas import Problem

    described = {
        304: "Not modified: the ETag in If-None-Match is current.",
        401: "No valid API key.",
        403: "The API key's scope is too narrow.",
        404: "No record with that id.",
        409: "A conflict: a duplicate email, an already converted or read-only lead "
        "(`conflicting` holds the record(s) in the way), or a request the database's "
        "state does not allow.",
        412: "If-Match names an old version; `conflicting` holds the current record.",
        413: "The request body is too large.",
        429: "Too many failed sign-ins from this address: wait `Retry-After` seconds.",
        422: "Invalid input; `errors` names each field.",
        503: "The database is unavailable or overloaded.",
    }
    out: dict[int | str, dict[str, Any]] = {}
    if 401 in statuses:  # wherever a key is checked, sign-ins are throttled
        statuses = (*statuses, 429)
    for status in statuses:
        if status == 304:
            out[status] = {"description": described[status]}
            continue
        out[status] = {
            "model": Problem,
            "description": described.get(status, "An error."),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out
