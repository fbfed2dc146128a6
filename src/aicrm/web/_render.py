"""Rendering pages, and every error as a friendly page (never a traceback).

:class:`PageRoute` is the router's route class: whatever a page raises — an aicrm
error (database errors arrive translated, :func:`aicrm.db.errors.translated`), a bad
parameter, a bug — becomes an HTML page with the right status (the error's
``http_status``, as the API answers it) and a one-line explanation. A missing or
expired key on a page someone opens sends them to the login page instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from aicrm.api.throttle import FAILED_SIGN_IN
from aicrm.db.errors import translated
from aicrm.errors import AicrmError, InvalidInput, Unauthorized
from aicrm.web import _display as display

log = logging.getLogger("aicrm.web")

templates = Environment(
    loader=PackageLoader("aicrm.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


templates.filters.update(
    when=display.when,
    score=display.score,
    shown=display.shown,
    odds=display.odds,
    updates=display.updates,
)

# What each kind of error is called on its page (``AicrmError.problem``); its status
# is the class's ``http_status``, the one map in errors.py, which the API uses too.
TITLES = {
    "conflict": "That change conflicts with existing data",
    "stale-update": "That record changed since you read it",
    "not-found": "Not found",
    "invalid-input": "That request is not valid",
    "unauthorized": "Please sign in",
    "forbidden": "Your key does not allow this",
    "database-unavailable": "The database is not available",
    "busy": "The database is busy",
    "not-possible": "That cannot be done now",
}


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render template ``name`` with the signed-in key (if any) and ``context``."""
    key = getattr(request.state, "api_key", None)
    body = templates.get_template(name).render(request=request, key=key, **context)
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def error_page(request: Request, exc: BaseException) -> Response:
    """The page for an error raised while serving ``request``."""
    if isinstance(exc, RequestValidationError):
        fields = ", ".join(
            str(err.get("loc", ("?",))[-1]) for err in exc.errors() if isinstance(err, dict)
        )
        exc = InvalidInput(f"Invalid value for {fields or 'the request'}.")
    if isinstance(exc, Unauthorized):
        request.scope[FAILED_SIGN_IN] = True  # a wrong cookie counts, even when redirected
    if isinstance(exc, Unauthorized) and request.method == "GET":
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/login?next={target}", status_code=303)
    if not isinstance(exc, AicrmError):
        log.error("page %s failed", request.url.path, exc_info=exc)
        return page(
            request,
            "error.html",
            500,
            title="Something went wrong",
            message="The page could not be shown because of an internal error; it has been "
            "logged. Try again, or go back to the leads.",
        )
    title = TITLES.get(exc.problem, "Something went wrong")
    return page(request, "error.html", exc.http_status, title=title, message=exc.message)


class PageRoute(APIRoute):
    """A route whose errors are rendered by :func:`error_page`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                # The boundary here too: a page's own errors reach this handler before
                # the connection's dependency (connections.get_conn) sees them.
                with translated():
                    return await handler(request)
            except Exception as exc:  # every failure becomes a page
                return error_page(request, exc)

        return guarded
