"""Transactions of the CRM: who is acting, and database errors as aicrm errors."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

from aicrm.db import Connection
from aicrm.db.errors import translated


def default_actor() -> str:
    """The OS user, for commands run by a person at a terminal."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


@contextmanager
def transaction(conn: Connection, actor: str | None = None) -> Iterator[Connection]:
    """One transaction whose changes the history records as made by ``actor``.

    Database errors raised inside become :class:`aicrm.AicrmError` subclasses
    (read-only lead, conflict, invalid value) at :func:`aicrm.db.errors.translated`;
    the transaction is rolled back.
    """
    with translated(), conn.transaction():
        conn.execute("SELECT set_config('aicrm.actor', %s, true)", (actor or default_actor(),))
        yield conn
