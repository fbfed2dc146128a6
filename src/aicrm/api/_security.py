"""Security headers on every answer, pages and API alike.

The dashboard runs no inline script and loads nothing from another site, so its
Content-Security-Policy allows scripts, styles and images from this origin only
(SVG charts are inline markup, not script). Nobody may frame the pages
(``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for older browsers),
browsers must not guess content types (``nosniff``), and no URL leaks to other
sites in a ``Referer`` (``same-origin``: the dashboard's URLs hold record ids and
search words). Not ``no-referrer``: under it Chromium sends ``Origin: null`` with a
form, and the dashboard's forms are accepted only with their own Origin.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# As they go on the wire (names lower case, as Starlette's MutableHeaders writes them).
RAW_HEADERS = tuple(
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in HEADERS.items()
)


class SecurityHeaders:
    """ASGI middleware adding :data:`HEADERS` to every HTTP response (an answer that
    sets one of them itself keeps its own).

    It works on the raw header list (every request passes here, the API's hot path
    too): the same headers, in the same order, as :class:`starlette.datastructures.MutableHeaders`
    would add them, without building one per response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message["headers"])
                present = {name for name, _ in headers}
                headers.extend(pair for pair in RAW_HEADERS if pair[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
