"""Sign-in throttling: after repeated failed sign-ins from one client, 429.

A *sign-in attempt* is any request that presents credentials: an ``Authorization``
or ``X-API-Key`` header, the dashboard's cookie, or the login form (``POST
/login``). When one answers 401, the client's address is charged a failure. A
client with :data:`FAILURES` failures within :data:`WINDOW` seconds gets 429 with
``Retry-After`` (the seconds until its oldest failure ages out) for every further
attempt, right key or wrong, until then; other clients are not affected.

The count is kept in memory, per server process: with ``--workers N`` a client may
try up to N × FAILURES keys per window, and a restart forgets. That keeps the
check free of any database round trip (a flood of wrong keys must not become a
flood of writes); docs/security.md explains the choice. The address is the TCP
peer's: behind a reverse proxy, every client shares the proxy's.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Page = Callable[[Request, int, str, str], Response]
"""Renders a page: the request, the status, a title and a one-line message."""

FAILURES = 10  # failed sign-ins per client within WINDOW before 429
WINDOW = 60.0  # seconds
MAX_CLIENTS = 10_000  # addresses remembered at most (the oldest are forgotten first)
# Set in the request's scope by a handler that refused a key without answering 401
# (the dashboard redirects a page with a wrong cookie to the login form).
FAILED_SIGN_IN = "aicrm.failed_sign_in"
CREDENTIAL_HEADERS = frozenset((b"authorization", b"x-api-key"))


class Throttle:
    """Failed sign-ins per client address, in a sliding window."""

    def __init__(
        self,
        failures: int = FAILURES,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self.clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Seconds ``client`` must wait before trying again, or None if it may try."""
        times = self._recent(client)
        if times is None or len(times) < self.failures:
            return None
        return max(1, math.ceil(times[-self.failures] + self.window - self.clock()))

    def failed(self, client: str) -> None:
        """Charge ``client`` one failed sign-in."""
        times = self._recent(client)
        if times is None:
            times = self._seen[client] = deque(maxlen=self.failures)
            while len(self._seen) > MAX_CLIENTS:
                self._seen.popitem(last=False)
        times.append(self.clock())
        self._seen.move_to_end(client)

    def _recent(self, client: str) -> deque[float] | None:
        times = self._seen.get(client)
        if times is None:
            return None
        horizon = self.clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._seen[client]
            return None
        return times


def attempts_sign_in(scope: Scope) -> bool:
    """Whether a request presents credentials (see the module's docstring).

    One pass over the raw headers (every request asks): an ``Authorization`` or
    ``X-API-Key`` header, or the dashboard's cookie in the first ``Cookie`` header
    (the one :class:`starlette.datastructures.Headers` would give)."""
    cookie: bytes | None = None
    for name, value in scope["headers"]:
        if name in CREDENTIAL_HEADERS:
            return True
        if name == b"cookie" and cookie is None:
            cookie = value
    if scope.get("method") == "POST" and scope.get("path") == "/login":
        return True
    return cookie is not None and b"aicrm_key=" in cookie


class SignInThrottle:
    """ASGI middleware: refuses (429) the attempts of a throttled client, and charges
    every attempt answered 401."""

    def __init__(self, app: ASGIApp, throttle: Throttle, page: Page | None = None) -> None:
        self.app = app
        self.throttle = throttle
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not attempts_sign_in(scope):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.retry_after(client)
        if wait is not None:
            await refusal(scope, wait, self.page)(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and (
                message["status"] == 401 or scope.get(FAILED_SIGN_IN)
            ):
                self.throttle.failed(client)
            await send(message)

        await self.app(scope, receive, watch)


def refusal(scope: Scope, wait: int, page: Page | None = None) -> Response:
    """The 429: a problem document for the API, the dashboard's ``page`` elsewhere (a
    problem document too when the app has no dashboard)."""
    detail = (
        f"Too many failed sign-ins from your address; try again in {wait} s "
        "(check the API key you send)."
    )
    headers = {"Retry-After": str(wait)}
    if scope["path"].startswith(("/api/", "/mcp")) or page is None:
        from aicrm.api.problems import problem

        return problem(429, "too-many-requests", "Too many requests", detail, headers=headers)
    answer = page(Request(scope), 429, "Too many sign-ins", detail)
    answer.headers.update(headers)
    return answer
