"""The webhook worker's HTTP/1.1 client: a POST at a time per thread, on a kept-alive
connection per host, written on the standard library's sockets (and ``ssl`` for
https). ``http.client`` cost about six times the CPU per request (its header parsing
goes through the ``email`` package), and the worker's throughput is CPU-bound.

Only the status matters: 2xx is delivered, anything else (another status, a refused
connection, a timeout) is a failure that the worker retries. An answer's body is read
when its ``Content-Length`` is at most :data:`READ_LIMIT` and dropped; any other answer
(chunked, longer, ``Connection: close``) closes the connection after its headers.
"""

from __future__ import annotations

import functools
import socket
import ssl
import threading
from urllib.parse import quote, urlsplit

READ_LIMIT = 64 * 1024
HEAD_LIMIT = 64 * 1024
NO_BODY = {204, 304}


class DeliveryFailed(Exception):
    """A POST that did not reach a 2xx answer; ``str()`` says why in a few words."""


class _Stale(Exception):
    """A kept-alive connection that the receiver had closed before this request."""


class _Connection:
    def __init__(self, scheme: str, host: str, port: int, timeout: float) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.buffer = b""
        self.used = False

    def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send ``request``; the answer's status, and whether the connection stays open."""
        reused, self.used = self.used, True
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                if reused and not self.buffer:
                    raise _Stale
                raise ConnectionResetError("the receiver closed the connection")
            self.buffer += chunk
            if len(self.buffer) > HEAD_LIMIT:
                raise ValueError("an answer's headers over 64 KiB")
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        keep = headers.get("connection") != "close"
        length = 0 if status in NO_BODY or 100 <= status < 200 else None
        if length is None and "transfer-encoding" not in headers:
            try:
                length = int(headers["content-length"])
            except (KeyError, ValueError):
                length = None
        if length is None or length > READ_LIMIT:
            self.buffer = b""
            return status, False
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                return status, False
            rest += chunk
        self.buffer = rest[length:]
        return status, keep

    def close(self) -> None:
        self.sock.close()


class Poster:
    """POSTs bodies; each thread keeps its own connection to each host."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[_Connection] = set()

    def _connections(self) -> dict[tuple[str, str, int], _Connection]:
        found: dict[tuple[str, str, int], _Connection] | None = getattr(
            self._local, "connections", None
        )
        if found is None:
            found = self._local.connections = {}
        return found

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body`` to ``url``; returns the 2xx status, raises :class:`DeliveryFailed`."""
        key, start = _target(url)
        lines = [start, f"Content-Length: {len(body)}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        scheme, host, port = key
        cache = self._connections()
        for _ in range(2):
            conn = cache.get(key)
            try:
                if conn is None:
                    conn = cache[key] = _Connection(scheme, host, port, self.timeout)
                    with self._lock:
                        self._all.add(conn)
                status, keep = conn.exchange(request)
            except _Stale:
                self._drop(key, conn)
                continue  # a kept-alive connection the receiver had closed: once more
            except (OSError, ValueError, IndexError) as exc:
                self._drop(key, conn)
                raise DeliveryFailed(_why(exc)) from None
            if not keep:
                self._drop(key, conn)
            if 200 <= status < 300:
                return status
            raise DeliveryFailed(f"HTTP {status}")
        raise DeliveryFailed("the receiver closed the connection")

    def _drop(self, key: tuple[str, str, int], conn: _Connection | None) -> None:
        self._connections().pop(key, None)
        if conn is not None:
            conn.close()
            with self._lock:
                self._all.discard(conn)

    def close(self) -> None:
        """Close every thread's connections (when no POST is under way)."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


@functools.lru_cache(maxsize=256)
def _target(url: str) -> tuple[tuple[str, str, int], str]:
    """(scheme, host, port), and the request line with its Host header, for ``url``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = quote(parts.path or "/", safe="/:@!$&'()*+,;=-._~%") + (
        "?" + quote(parts.query, safe="/:@!$&'()*+,;=-._~%?") if parts.query else ""
    )
    start = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}"
    return (parts.scheme, host, port), start


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or type(exc).__name__})"
    if isinstance(exc, ValueError | IndexError):
        return "not an HTTP answer"
    return type(exc).__name__


__all__ = ["DeliveryFailed", "Poster"]
