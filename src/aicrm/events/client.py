"""The webhook worker's HTTP client: one POST at a time per thread, on a kept-alive
connection per host (the standard library's ``http.client``; no dependency).

Only the status matters: 2xx is delivered, anything else (another status, a refused
connection, a timeout) is a failure that the worker retries. A receiver's answer is
read up to :data:`READ_LIMIT` bytes and dropped; a longer one closes the connection.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from urllib.parse import urlsplit

READ_LIMIT = 64 * 1024


class DeliveryFailed(Exception):
    """A POST that did not reach a 2xx answer; ``str()`` says why in a few words."""


class Poster:
    """POSTs bodies; each thread keeps its own connection to each host."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[http.client.HTTPConnection] = set()

    def _connections(self) -> dict[tuple[str, str, int], http.client.HTTPConnection]:
        found: dict[tuple[str, str, int], http.client.HTTPConnection] | None = getattr(
            self._local, "connections", None
        )
        if found is None:
            found = self._local.connections = {}
        return found

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body`` to ``url``; returns the 2xx status, raises :class:`DeliveryFailed`."""
        parts = urlsplit(url)
        https = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if https else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (parts.scheme, host, port)
        cache = self._connections()
        for fresh in (False, True):
            conn = None if fresh else cache.get(key)
            reused = conn is not None
            if conn is None:
                conn = (
                    http.client.HTTPSConnection(
                        host, port, timeout=self.timeout, context=ssl.create_default_context()
                    )
                    if https
                    else http.client.HTTPConnection(host, port, timeout=self.timeout)
                )
                cache[key] = conn
                with self._lock:
                    self._all.add(conn)
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                response.read(READ_LIMIT)
                if not response.isclosed():
                    conn.close()
                status = response.status
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop(key, conn)
                if reused:
                    continue  # a kept-alive connection the receiver had closed: once more
                raise DeliveryFailed(_why(exc)) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(key, conn)
                raise DeliveryFailed(_why(exc)) from None
            if 200 <= status < 300:
                return status
            raise DeliveryFailed(f"HTTP {status}")
        raise DeliveryFailed("the connection was closed twice")  # pragma: no cover

    def _drop(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._connections().pop(key, None)
        with self._lock:
            self._all.discard(conn)

    def close(self) -> None:
        """Close every thread's connections (when no POST is under way)."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or type(exc).__name__})"
    return type(exc).__name__


__all__ = ["DeliveryFailed", "Poster"]
