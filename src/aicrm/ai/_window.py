"""The training window: which leads are labels, written once.

A lead is a label when it was created at or after ``since`` and its whole horizon
(``horizon`` days after creation) lies before ``as_of``. Every query that counts or
reads the labelled leads composes :data:`LABELLED` in, with the window's values as
parameters (:meth:`Window.params`), so the condition exists in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from aicrm.db import Connection
from aicrm.db.errors import translated

# The condition on ``leads l`` that makes a lead a label of the window.
LABELLED = sql.SQL(
    "l.created_at >= %(since)s AND l.created_at + %(horizon)s * interval '1 day' <= %(as_of)s"
)
NOW = "SELECT now()"
EPOCH = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """The labelled leads: created in [since, as_of - horizon]."""

    horizon: int
    as_of: datetime
    since: datetime = EPOCH

    def params(self) -> dict[str, Any]:
        """The window's values as the named parameters :data:`LABELLED` reads."""
        return {"horizon": self.horizon, "as_of": self.as_of, "since": self.since}

    @property
    def last_creation(self) -> datetime:
        """The latest creation moment a labelled lead can have."""
        return self.as_of - timedelta(days=self.horizon)


def labelled_query(template: sql.SQL) -> sql.Composed:
    """``template`` (this package's SQL, with ``{labelled}`` where the condition goes)
    with :data:`LABELLED` composed in."""
    return template.format(labelled=LABELLED)


@translated()
def server_now(conn: Connection) -> datetime:
    """The database server's ``now()`` (the transaction's start)."""
    row = conn.execute(NOW).fetchone()
    assert row is not None
    value: datetime = row[0]
    return value
