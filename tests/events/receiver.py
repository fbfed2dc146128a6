"""A real webhook receiver on loopback for the tests: a threaded http.server that
records every request and answers as the test decides."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender killed mid-request resets its connection: expected here


class Receiver:
    """Records requests; ``answer(request, count_so_far_for_its_event) -> status``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.changed = threading.Condition()
        self.answer: Callable[[Received, int], int] = lambda _r, _n: 200
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing was received
                    self.close_connection = True
                    return
                got = Received(self.path, dict(self.headers.items()), body)
                with receiver.changed:
                    seen = sum(
                        1
                        for r in receiver.requests
                        if r.headers.get("Aicrm-Event-Id") == got.headers.get("Aicrm-Event-Id")
                    )
                    receiver.requests.append(got)
                    receiver.changed.notify_all()
                status = receiver.answer(got, seen)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 60) -> None:
        """Wait until ``predicate(requests)`` holds; fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the receiver waited {timeout} s in vain")
                self.changed.wait(left)

    def ids(self) -> list[str]:
        with self.changed:
            return [r.headers["Aicrm-Event-Id"] for r in self.requests]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def wait_until(check: Callable[[], bool], timeout: float = 60, what: str = "a condition") -> None:
    """Poll ``check`` (a database state) until it holds, failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        threading.Event().wait(0.02)
