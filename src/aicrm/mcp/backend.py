"""The MCP server's access to the CRM: one connection, one call at a time, under one key.

Every call re-checks the key (a revoked key stops working at once) and its scope.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aicrm import apikeys
from aicrm.apikeys import ApiKey
from aicrm.db import Connection, Target, connect
from aicrm.errors import Unauthorized


class Backend:
    """One database connection shared by the tools, one call at a time, under one key."""

    def __init__(self, where: Target, token: str) -> None:
        self.where = where
        self.token = token
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.where, autocommit=True, application_name="aicrm mcp")
        return self._conn

    @contextmanager
    def call(self, scope: str) -> Iterator[tuple[Connection, ApiKey]]:
        """The connection and the caller's key, checked for ``scope``, for one tool call."""
        with self._lock:
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
            yield conn, key

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
