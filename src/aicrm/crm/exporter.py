"""CSV export of any filtered list of leads, clients or contacts.

The rows stream from ``COPY (SELECT …) TO STDOUT`` straight into the output, so a
million of them never sit in memory. The filters are those of listing
(:class:`aicrm.crm.store.Query`: column values, attributes, full-text search,
creation time), the order is oldest first (``created_at, id``), and the columns
are the record's own, in its order, with a header line: exactly what
:mod:`aicrm.crm.importer` reads back. Times are written in UTC (ISO 8601), JSON
columns as JSON, empty values as nothing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from psycopg import sql

from aicrm.crm import store
from aicrm.crm.records import Record
from aicrm.crm.store import Query
from aicrm.db import Connection
from aicrm.errors import InvalidInput

# Called with the bytes written so far.
Progress = Callable[[int], None]

# How times are written, for the transaction.
SETTINGS = "SELECT current_setting('TimeZone'), current_setting('DateStyle')"
SET_SETTINGS = "SELECT set_config('TimeZone', %s, true), set_config('DateStyle', %s, true)"


def export_csv(
    conn: Connection,
    cls: type[Record],
    out: IO[bytes],
    query: Query | None = None,
    *,
    progress: Progress | None = None,
) -> int:
    """Write the records of ``cls`` that match ``query`` (ignoring its cursor and
    limit) to ``out`` as UTF-8 CSV; the number of records written.

    Runs in a transaction of its own when none is open (one consistent snapshot
    either way: a single statement)."""
    query = query or Query()
    parts, params = store.conditions(cls, query)
    statement = sql.SQL(
        "COPY (SELECT {columns} FROM {table}{where} ORDER BY created_at, id) "
        "TO STDOUT (FORMAT csv, HEADER true, ENCODING 'UTF8')"
    ).format(
        columns=store.columns(cls), table=sql.Identifier(cls.TABLE), where=store.where_sql(parts)
    )
    written = 0
    with conn.transaction(), conn.cursor() as cur:
        # Times in UTC and ISO 8601 whatever the session's settings, so the file
        # reads the same anywhere; the caller's settings come back afterwards.
        before = cur.execute(SETTINGS).fetchone()
        cur.execute(SET_SETTINGS, ("UTC", "ISO, YMD"))
        with cur.copy(statement, params or None) as copy:
            for data in copy:
                out.write(data)
                written += len(data)
                if progress is not None:
                    progress(written)
        rows = cur.rowcount
        if before is not None:
            cur.execute(SET_SETTINGS, before)
    return max(rows, 0)


def export_to_path(
    conn: Connection,
    cls: type[Record],
    path: str | os.PathLike[str],
    query: Query | None = None,
    *,
    progress: Progress | None = None,
) -> int:
    """Like :func:`export_csv`, into a file that appears only when complete: the
    rows go to a temporary file beside it, renamed over ``path`` at the end (an
    existing file is replaced; a failed export leaves it as it was). The file is
    readable by its owner only (mode 0600), like backups: it holds personal data."""
    target = Path(path)
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder; give a file name for the export.")
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed when complete
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
        )
    except OSError as exc:
        raise InvalidInput(f"Cannot write {target}: {exc.strerror or exc}.") from None
    pending = Path(handle.name)
    try:
        with handle:
            rows = export_csv(conn, cls, handle, query, progress=progress)
        os.replace(pending, target)
    except OSError as exc:
        pending.unlink(missing_ok=True)
        raise InvalidInput(f"Cannot write {target}: {exc.strerror or exc}.") from None
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    return rows
