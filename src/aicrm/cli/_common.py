"""What the CRM commands share: a connection, option parsing, record rendering."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import typer
from rich.table import Table
from rich.text import Text

from aicrm.cli import _output as output
from aicrm.crm.pagination import Page
from aicrm.crm.records import Record
from aicrm.db import Connection, connect, connect_read, target
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput, UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AttrOpt = Annotated[
    list[str] | None,
    typer.Option("--attr", help="An attribute KEY=VALUE (repeatable; VALUE may be JSON)."),
]
LimitOpt = Annotated[int, typer.Option(min=1, max=1000, help="Records per page.")]
CursorOpt = Annotated[str | None, typer.Option(help="Continue after this page's cursor.")]
SearchOpt = Annotated[str | None, typer.Option(help="Full-text search; words match prefixes.")]


# Whether the migration ledger exists, and the newest version it records.
# Whether the ledger exists, and whether this login may read it: an application role
# holding only its grants on the CRM's tables may not (docs/least-privilege.md).
# CASE, not AND: SQL does not promise to evaluate AND's left side first, and the
# privilege check of a table that does not exist is an error.
HAS_LEDGER = """
SELECT to_regclass('aicrm_schema_migrations') IS NOT NULL,
       CASE WHEN to_regclass('aicrm_schema_migrations') IS NULL THEN false
            ELSE has_table_privilege('aicrm_schema_migrations', 'SELECT') END
"""
SCHEMA_VERSION = "SELECT max(version) FROM aicrm_schema_migrations"


@functools.cache
def newest_version() -> int:
    """The newest migration this aicrm ships."""
    from aicrm.migrate.loader import load

    return max(m.version for m in load())


def require_schema(conn: Connection) -> None:
    """:class:`UsageError` (exit 2) unless the database is at the newest schema: the
    one check, for every command that works on the CRM (they all connect through
    :func:`database`)."""
    ledger = conn.execute(HAS_LEDGER).fetchone()
    readable = bool(ledger and ledger[1])
    row = conn.execute(SCHEMA_VERSION).fetchone() if readable else None
    conn.rollback()  # leave no transaction open behind the check
    if ledger and ledger[0] and not readable:
        return  # migrated, by someone else; this role cannot see to which version
    have = row[0] if row else None
    need = newest_version()
    if have is None:
        raise UsageError(
            "This database has no aicrm schema yet (it was never migrated). Run "
            "'aicrm db migrate' first, then run this command again."
        )
    if have < need:
        raise UsageError(
            f"This database is at schema version {have:03d}, older than the {need:03d} this "
            "aicrm needs. Run 'aicrm db migrate' first, then run this command again."
        )


class HasDict(Protocol):
    """What :func:`show_record` shows: anything with ``to_dict()`` (users, activities)."""

    def to_dict(self) -> dict[str, Any]: ...


def actor() -> str:
    """Who the history records as acting: ``AICRM_ACTOR`` or the OS user."""
    from aicrm.crm.session import default_actor

    return os.environ.get("AICRM_ACTOR") or default_actor()


@contextmanager
def database(read_only: bool = False) -> Iterator[Connection]:
    """A connection to the configured database, named on stderr for a person at a
    terminal (never the password); scripts get clean stderr: errors only. Refuses
    (exit 2, :func:`require_schema`) a database that is not at the newest schema.
    A database error raised inside leaves as an :class:`aicrm.AicrmError`
    (:func:`aicrm.db.errors.translated`).

    ``read_only``: a command that only reads and may read a little behind (lists,
    export, reports, analysis) reads the replica (``AICRM_READ_URL``) while it lags
    at most ``AICRM_READ_MAX_LAG`` seconds, else the primary (and says why on stderr).
    """
    where = target()
    if output.stderr.is_terminal:
        output.stderr.print(f"[dim]database: {where.describe()}[/]", highlight=False)
    opened = connect_read(where, autocommit=False) if read_only else connect(where)
    with translated(), opened as conn:  # the boundary: aicrm errors only leave here
        require_schema(conn)
        yield conn


@contextmanager
def replica_read() -> Iterator[Connection | None]:
    """For a command that writes on the primary (:func:`database`) but may read its
    input a little behind: a second connection for that read, to the replica
    (``AICRM_READ_URL``) while it lags at most ``AICRM_READ_MAX_LAG``, else to the
    primary (saying why on stderr); None without ``AICRM_READ_URL``."""
    where = target()
    if where.read is None:
        yield None
        return
    with translated(), connect_read(where, application_name="aicrm read") as conn:
        require_schema(conn)
        yield conn


def attributes(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict; a VALUE that parses as JSON is used as JSON."""
    found: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"'{pair}' is not KEY=VALUE.")
        try:
            found[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            found[key.strip()] = raw
    return found


def moment(text: str | None, what: str = "time") -> datetime | None:
    """An ISO 8601 date or timestamp (UTC when no zone is given)."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"'{text}' is not a {what}; use ISO 8601, e.g. 2026-11-24 or 2026-11-24T15:30:00+01:00."
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def given(**values: Any) -> dict[str, Any]:
    """The options that were given (not None)."""
    return {key: value for key, value in values.items() if value is not None}


def show_record(
    record: Record | HasDict, as_json: bool, extra: dict[str, Any] | None = None
) -> None:
    data = record.to_dict() | (extra or {})
    if as_json:
        output.emit_json(data)
        return
    width = max(len(key) for key in data)
    for key, value in data.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        text = "" if shown is None else output.printable(str(shown))
        output.say(f"{key:<{width}}  {text}")


def show_page(page: Page[Any], columns: Sequence[str], as_json: bool, title: str) -> None:
    if as_json:
        output.emit_json(
            {"items": [item.to_dict() for item in page.items], "next_cursor": page.next_cursor}
        )
        return
    if not output.stdout.is_terminal:
        # Piped: tab-separated with a header line, for cut, awk and spreadsheets.
        lines = ["\t".join(columns)]
        for item in page.items:
            data = item.to_dict()
            lines.append("\t".join(_cell(data.get(c), c, full=True) for c in columns))
        sys.stdout.write("\n".join(lines) + "\n")
        if page.next_cursor:
            output.stderr.print(f"more: --cursor {page.next_cursor}", markup=False)
        return
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for item in page.items:
        data = item.to_dict()
        # Text, not markup: a stored "[bold]" is shown as it is.
        table.add_row(*(Text(_cell(data.get(column), column)) for column in columns))
    output.stdout.print(table)
    if page.next_cursor:
        output.say(f"more: --cursor {page.next_cursor}")


def _cell(value: Any, column: str, full: bool = False) -> str:
    """A value in a table or a tab-separated line, control characters escaped; a
    timestamp column's value to the second in a table."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return output.printable(json.dumps(value, ensure_ascii=False))
    if isinstance(value, float):
        return str(value) if full else f"{value:.2f}"
    text = output.printable(str(value))
    timestamp = column.endswith(("_at", "_date")) and not full
    return text[:19].replace("T", " ") if timestamp else text
