"""CSV export of any filtered list of leads, clients or contacts.

The rows stream from ``COPY (SELECT …) TO STDOUT`` straight into the output, so a
million of them never sit in memory. The filters are those of listing
(:class:`aicrm.crm.store.Query`: column values, attributes, full-text search,
creation time), the order is oldest first (``created_at, id``), and the columns
are the record's own, in its order, with a header line: what
:mod:`aicrm.crm.importer` reads back. Times are written in UTC (ISO 8601), JSON
columns as JSON, empty values as nothing.

Formulas are neutralised by default (OWASP "CSV Injection"): a value that starts
with ``=``, ``+``, ``-``, ``@``, ``|``, ``%``, a tab or a carriage return would be run
by a spreadsheet, so it is written with a leading ``'`` (by PyPI's ``defusedcsv``;
numbers such as ``-12.5`` are left alone). ``raw=True`` writes the values exactly,
for a round trip through the importer or another program that is no spreadsheet.
Only the rows that hold such a value are parsed and written again (where an empty
text and a missing value both come out empty); the others pass through as
PostgreSQL wrote them.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from defusedcsv import csv as defused
from psycopg import sql

from aicrm.crm import store
from aicrm.crm.records import Record
from aicrm.crm.store import Query
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput

# Called with the bytes written so far.
Progress = Callable[[int], None]

# How times are written, for the transaction.
SETTINGS = "SELECT current_setting('TimeZone'), current_setting('DateStyle')"
SET_SETTINGS = "SELECT set_config('TimeZone', %s, true), set_config('DateStyle', %s, true)"

# A field that may start a formula, at the start of a row or after a comma (quoted or
# not): the quick test that decides whether a row is parsed and rewritten.
RISKY = re.compile(rb'(?:^|,)"?[=+\-@|%\t\r]')


def neutralised(row: bytes) -> bytes:
    """One CSV row (as COPY writes it) with every value that could start a formula
    prefixed by ``'`` (``defusedcsv``, plus the tab and carriage return it leaves)."""
    if not RISKY.search(row):
        return row
    out = io.StringIO(newline="")
    # "\r\n" so that fields holding a CR or LF are quoted; the row ends as COPY's do.
    writer = defused.writer(out, lineterminator="\r\n")
    for fields in csv.reader(io.StringIO(row.decode("utf-8"), newline="")):
        writer.writerow(["'" + f if f[:1] in ("\t", "\r") else f for f in fields])
    return out.getvalue().removesuffix("\r\n").encode("utf-8") + b"\n"


@translated()
def export_csv(
    conn: Connection,
    cls: type[Record],
    out: IO[bytes],
    query: Query | None = None,
    *,
    progress: Progress | None = None,
    raw: bool = False,
) -> int:
    """Write the records of ``cls`` that match ``query`` (ignoring its cursor and
    limit) to ``out`` as UTF-8 CSV; the number of records written. Formulas are
    neutralised unless ``raw`` (see the module's docstring).

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
            for data in copy:  # one row per chunk: libpq returns COPY data by rows
                if not raw:
                    data = neutralised(bytes(data))
                out.write(data)
                written += len(data)
                if progress is not None:
                    progress(written)
        rows = cur.rowcount
        if before is not None:
            cur.execute(SET_SETTINGS, before)
    return max(rows, 0)


@translated()
def export_to_path(
    conn: Connection,
    cls: type[Record],
    path: str | os.PathLike[str],
    query: Query | None = None,
    *,
    progress: Progress | None = None,
    raw: bool = False,
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
            rows = export_csv(conn, cls, handle, query, progress=progress, raw=raw)
        os.replace(pending, target)
    except OSError as exc:
        pending.unlink(missing_ok=True)
        raise InvalidInput(f"Cannot write {target}: {exc.strerror or exc}.") from None
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    return rows
