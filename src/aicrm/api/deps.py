"""The dependencies routes declare, as ``Annotated`` aliases (full-stack-fastapi-template's way).

A route names what it needs in its signature: a connection (``Db`` for the primary,
``ReadDb`` for a read that may lag a little) and the caller's key with a scope
(``ReadKey``, ``WriteKey``, ``AdminKey``: 401 without a valid key, 403 when its scope
is too narrow). What stands behind them lives in modules named for the job:

* :mod:`aicrm.api.connections`: the pools, a connection per request, the replica;
* :mod:`aicrm.api.auth`: the key a request presents, checked, and its scope;
* :mod:`aicrm.api._etags`: ETags, If-Match and If-None-Match;
* :mod:`aicrm.api._reads`: one record by id, the hot path (key check and read in one
  batched statement).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from aicrm.api.auth import require_scope
from aicrm.api.connections import get_conn, get_read_conn
from aicrm.apikeys import ApiKey
from aicrm.db import Connection

__all__ = ["AdminKey", "Db", "ReadDb", "ReadKey", "WriteKey"]

Db = Annotated[Connection, Depends(get_conn)]
"""A connection to the primary, for the request (the one every write takes)."""

ReadDb = Annotated[Connection, Depends(get_read_conn)]
"""A connection for a read that may lag a little: the replica's while it is fresh
enough, else the request's own ``Db``."""

ReadKey = Annotated[ApiKey, Depends(require_scope("read"))]
"""The caller's key, with at least the read scope."""

WriteKey = Annotated[ApiKey, Depends(require_scope("write"))]
"""The caller's key, with at least the write scope."""

AdminKey = Annotated[ApiKey, Depends(require_scope("admin"))]
"""The caller's key, with the admin scope."""
