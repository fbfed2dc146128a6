"""Errors as RFC 9457 problem details: one shape, built by one helper.

Every error response is ``application/problem+json`` with ``type``, ``title``,
``status`` and ``detail``; validation errors add ``errors`` (each naming its field),
conflicts add ``conflicting`` (the record in the way).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aicrm.crm.store import Stale
from aicrm.errors import (
    AicrmError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://aicrm.dev/problems/"

# Most specific first: Stale is a Conflict, but answers 412.
STATUS: list[tuple[type[AicrmError], int, str]] = [
    (Stale, 412, "stale-update"),
    (Conflict, 409, "conflict"),
    (NotFound, 404, "not-found"),
    (InvalidInput, 422, "invalid-input"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (ConnectionFailed, 503, "database-unavailable"),
]


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    """The one way to build an error response."""
    body = {"type": TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    body.update({key: value for key, value in extra.items() if value is not None})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def from_error(exc: AicrmError) -> JSONResponse:
    for cls, status, kind in STATUS:
        if isinstance(exc, cls):
            return problem(
                status,
                kind,
                kind.replace("-", " ").capitalize(),
                exc.message,
                conflicting=exc.details.get("conflicting"),
            )
    return problem(500, "internal", "Internal error", exc.message)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(AicrmError)
    async def _aicrm(_: Request, exc: AicrmError) -> JSONResponse:
        return from_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(part) for part in err.get("loc", ()) if part != "body"),
                "message": err.get("msg", "invalid"),
            }
            for err in exc.errors()
        ]
        fields = ", ".join(e["field"] for e in errors) or "the request"
        return problem(422, "invalid-input", "Invalid input", f"Invalid value for {fields}.",
                       errors=errors)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, kind, str(exc.detail), str(exc.detail))
