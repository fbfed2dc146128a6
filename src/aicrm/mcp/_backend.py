"""The MCP server's access to the CRM: one connection, one call at a time, under one key.

Every call re-checks the key (a revoked key stops working at once) and its scope, on
the primary. Searches and the summary (``lagging_ok``) read the read replica
(``AICRM_READ_URL``) while it lags at most ``AICRM_READ_MAX_LAG`` (docs/deployment.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Protocol

from aicrm import apikeys
from aicrm.apikeys import ApiKey
from aicrm.db import Connection, Router, Target, connect
from aicrm.db.errors import translated
from aicrm.errors import ConnectionFailed, Unauthorized

# The key of the HTTP request a tool call came in (MCP over HTTP); None over stdio.
CALLER: ContextVar[str | None] = ContextVar("aicrm_mcp_caller", default=None)


class Calls(Protocol):
    """What the tools need: a connection and the caller's key, checked for a scope."""

    def call(
        self, scope: str, lagging_ok: bool = False
    ) -> AbstractContextManager[tuple[Connection, ApiKey]]: ...


class Backend:
    """One database connection shared by the tools, one call at a time, under one key."""

    def __init__(self, where: Target, token: str) -> None:
        self.where = where
        self.token = token
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._read: Connection | None = None
        self._router = Router(where) if where.read is not None else None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.where, autocommit=True, application_name="aicrm mcp")
        return self._conn

    def _read_connection(self) -> Connection | None:
        """The replica's connection when the router lets reads go there, else None."""
        if self._router is None or self.where.read is None or not self._router.use_replica():
            return None
        if self._read is None or self._read.closed or self._read.broken:
            try:
                self._read = connect(self.where.read, autocommit=True, application_name="aicrm mcp")
            except ConnectionFailed as exc:
                self._router.failed(f"it cannot be reached ({exc})")
                return None
        return self._read

    @contextmanager
    def call(self, scope: str, lagging_ok: bool = False) -> Iterator[tuple[Connection, ApiKey]]:
        """The connection and the caller's key, checked for ``scope``, for one tool call.
        ``lagging_ok``: the call only reads, and may read the replica. A database error
        raised inside leaves as an :class:`aicrm.AicrmError` (the boundary,
        :func:`aicrm.db.errors.translated`)."""
        with self._lock, translated():
            conn = self._connection()
            try:
                with conn.transaction():
                    key = apikeys.authenticate(conn, self.token)
            except Unauthorized:
                raise Unauthorized(
                    "The API key (AICRM_API_KEY or --api-key) is not valid, or it was revoked. "
                    "Create one with 'aicrm apikey create NAME --scope read'."
                ) from None
            apikeys.require(key, scope)
            yield (self._read_connection() if lagging_ok else None) or conn, key

    def close(self) -> None:
        for conn in (self._conn, self._read):
            if conn is not None:
                conn.close()
        if self._router is not None:
            self._router.close()
