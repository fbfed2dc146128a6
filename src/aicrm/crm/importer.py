"""CSV import of leads and contacts: COPY into a staging table, checks in SQL, one INSERT.

How an import runs, in one transaction:

1. the header is read and checked in Python before anything is sent: every column
   must be one a lead (contact) file may have, named once, and the columns a record
   needs must be there; an empty file or a header that is not UTF-8 is refused;
2. the file is streamed in chunks into ``COPY … FROM STDIN`` into a TEMP staging
   table of text columns plus the CSV line number; each chunk is checked to be
   UTF-8 on the way (the server would refuse it anyway, with a worse message), and
   a ragged row (too many or too few fields) stops the COPY;
3. every row is checked by a few set-based statements (no Python loop per row):
   required fields, email format, status, UUIDs, numbers, JSON objects, times,
   the parent of a contact, ids already taken, and duplicate emails within the file
   and against the database (case-insensitive, the rule of
   :mod:`aicrm.crm.duplicates`) unless duplicates are allowed;
4. with any invalid row, nothing is written and :class:`InvalidInput` names the
   first few lines and reasons, with the total; with ``skip_invalid`` the valid
   rows are imported and the rejected ones written to a CSV (line, reason, the
   row's fields);
5. the valid rows go in with one ``INSERT … SELECT``; the history triggers record
   them as inserted by the actor.

"Line" is the CSV record's number counting the header as line 1: the line of the
file when no quoted field spans lines, and always the row number a spreadsheet
shows.

Concurrency: an import of up to :data:`LOCK_LIMIT` rows takes the per-email
advisory locks that single creations take (:mod:`aicrm.crm.duplicates`) before it
looks for duplicates, so a lead created at the same moment with the same email
waits for the import and then sees its rows. A larger import does not (one lock
per email would exhaust the server's lock table): a single creation racing it with
the same email can slip through, as a duplicate that ``aicrm leads merge`` can
resolve. Ids and parents are safe at any size: the primary keys and foreign keys
refuse what the checks could not see (the import then fails as a whole).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psycopg
from psycopg import sql

from aicrm.crm import session, statuses
from aicrm.crm.records import OPEN_STATUSES, Contact, Lead, Record
from aicrm.crm.store import EMAIL
from aicrm.db import Connection
from aicrm.errors import InvalidInput

CHUNK = 1 << 20  # bytes per COPY write
SHOWN = 5  # errors named in the message of a refused import
KEPT = 100  # errors kept in the result and in the exception's details
# Up to this many rows, the import takes the per-email advisory locks that
# single creations take (aicrm.crm.duplicates); see "Concurrency" above.
LOCK_LIMIT = 1000
WORK_MEM = "128MB"  # for the hash aggregates and joins of the checks

STAGING = sql.Identifier("aicrm_import_rows")
ERRORS = sql.Identifier("aicrm_import_errors")
# One row per rejected line, its reasons in the order they were found.
REASONS = sql.SQL(
    "SELECT line, string_agg(reason, '; ' ORDER BY seq) AS reason FROM {} GROUP BY line"
).format(ERRORS)
BOM = codecs.BOM_UTF8
# The email pattern of aicrm.crm.store, in PostgreSQL's regex dialect (the same
# text: [^@\s] means the same in both).
EMAIL_PATTERN = EMAIL.pattern
# What Python's str.strip() removes from an email, for btrim().
BLANKS = " \t\n\r\f\v"

Progress = Callable[[int, int], None]
Stage = Callable[[str], None]


@dataclass(frozen=True)
class Column:
    """A column an import file may have. ``kind`` says how it is checked and cast:
    text, email, status, uuid, id, real, json, time, lead (a lead's id), client,
    or empty / false for a lead's conversion columns (a converted lead cannot be
    imported: conversion is done by aicrm)."""

    name: str
    kind: str


@dataclass(frozen=True)
class Spec:
    cls: type[Record]
    columns: tuple[Column, ...]
    needs_one_of: tuple[str, ...]  # a row must have at least one of these
    needs_text: str  # how to say it

    @property
    def table(self) -> str:
        return self.cls.TABLE

    @property
    def noun(self) -> str:
        return self.cls.TABLE[:-1]

    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def kind(self, name: str) -> str:
        return next(c.kind for c in self.columns if c.name == name)


LEADS = Spec(
    Lead,
    (
        Column("id", "id"),
        Column("first_name", "text"),
        Column("last_name", "text"),
        Column("email", "email"),
        Column("company_name", "text"),
        Column("source", "text"),
        Column("status", "status"),
        Column("ai_score", "real"),
        Column("ai_summary", "text"),
        Column("ai_annotations", "json"),
        Column("attributes", "json"),
        Column("converted_to_client_id", "empty"),
        Column("conversion_date", "empty"),
        Column("is_converted", "false"),
        Column("created_at", "time"),
        Column("updated_at", "time"),
    ),
    ("email", "first_name", "last_name", "company_name"),
    "an email, a name or a company",
)

CONTACTS = Spec(
    Contact,
    (
        Column("id", "id"),
        Column("lead_id", "lead"),
        Column("client_id", "client"),
        Column("first_name", "text"),
        Column("last_name", "text"),
        Column("email", "email"),
        Column("title", "text"),
        Column("ai_annotations", "json"),
        Column("attributes", "json"),
        Column("created_at", "time"),
        Column("updated_at", "time"),
    ),
    ("email", "first_name", "last_name"),
    "an email or a name",
)

# The PostgreSQL type each checked kind is cast to.
TYPES = {
    "id": "uuid",
    "lead": "uuid",
    "client": "uuid",
    "real": "real",
    "json": "jsonb",
    "time": "timestamptz",
    "false": "boolean",
}

# Before PostgreSQL 16 there is no pg_input_is_valid(): these session-local
# functions try the cast instead (slower: a subtransaction per value).
VALIDATORS_15 = """
CREATE OR REPLACE FUNCTION pg_temp.aicrm_valid_{name}(value text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM value::{name};
    RETURN true;
EXCEPTION WHEN others THEN
    RETURN false;
END $$
"""


@dataclass(frozen=True)
class RowError:
    """Why the row at CSV ``line`` was not imported."""

    line: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "reason": self.reason}


@dataclass
class ImportResult:
    """What an import did: rows imported and rejected, where the rejects went, and
    the first few rejected rows."""

    table: str
    rows: int
    imported: int
    rejected: int
    rejects_path: Path | None = None
    errors: list[RowError] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "rows": self.rows,
            "imported": self.imported,
            "rejected": self.rejected,
            "rejects_path": str(self.rejects_path) if self.rejects_path else None,
            "errors": [e.to_dict() for e in self.errors],
        }


def import_leads(
    conn: Connection,
    path: str | os.PathLike[str],
    *,
    skip_invalid: bool = False,
    rejects_path: str | os.PathLike[str] | None = None,
    allow_duplicates: bool = False,
    actor: str | None = None,
    progress: Progress | None = None,
    stage: Stage | None = None,
) -> ImportResult:
    """Import leads from a CSV file; see the module's docstring for how.

    All or nothing unless ``skip_invalid``, when the valid rows are imported and the
    rejected ones written to ``rejects_path`` (if given) with their line and reason.
    ``progress(bytes_done, bytes_total)`` follows the upload; ``stage(text)`` names
    each later step. Raises :class:`InvalidInput` for a bad file or invalid rows.
    """
    return import_csv(
        conn,
        LEADS,
        path,
        skip_invalid=skip_invalid,
        rejects_path=rejects_path,
        allow_duplicates=allow_duplicates,
        actor=actor,
        progress=progress,
        stage=stage,
    )


def import_contacts(
    conn: Connection,
    path: str | os.PathLike[str],
    *,
    skip_invalid: bool = False,
    rejects_path: str | os.PathLike[str] | None = None,
    allow_duplicates: bool = False,
    actor: str | None = None,
    progress: Progress | None = None,
    stage: Stage | None = None,
) -> ImportResult:
    """Import contacts from a CSV file: each row names exactly one existing lead
    (``lead_id``) or client (``client_id``). Otherwise like :func:`import_leads`."""
    return import_csv(
        conn,
        CONTACTS,
        path,
        skip_invalid=skip_invalid,
        rejects_path=rejects_path,
        allow_duplicates=allow_duplicates,
        actor=actor,
        progress=progress,
        stage=stage,
    )


def import_csv(
    conn: Connection,
    spec: Spec,
    path: str | os.PathLike[str],
    *,
    skip_invalid: bool = False,
    rejects_path: str | os.PathLike[str] | None = None,
    allow_duplicates: bool = False,
    actor: str | None = None,
    progress: Progress | None = None,
    stage: Stage | None = None,
) -> ImportResult:
    """Import the CSV file at ``path`` into ``spec``'s table (:data:`LEADS` or
    :data:`CONTACTS`); see :func:`import_leads`. The rejects file, when given, is
    always written (just its header when no row was rejected), and appears only
    once the import has committed."""
    source = Path(path)
    rejects = Path(rejects_path) if rejects_path is not None else None
    if rejects is not None:
        if not skip_invalid:
            raise InvalidInput("A rejects file goes with skipping invalid rows (--skip-invalid).")
        if _same_file(source, rejects):
            raise InvalidInput(f"The rejects file {rejects} is the file being imported.")
        if not rejects.parent.is_dir():
            raise InvalidInput(
                f"Cannot write the rejects file {rejects}: there is no folder {rejects.parent}."
            )
    header = read_header(source, spec)
    checks = Checks(
        spec,
        header.columns,
        conn.info.server_version >= 160000,
        tuple(statuses.names(conn, "open", "lost")),
    )
    pending: Path | None = None
    try:
        with session.transaction(conn, actor):
            conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)))
            checks.create_staging(conn)
            rows = _upload(conn, source, header, progress)
            _say(stage, f"checking {rows:,} rows")
            errors = checks.run(conn, allow_duplicates, rows)
            if errors and not skip_invalid:
                raise _refusal(conn, spec, source, rows, errors)
            _say(stage, f"inserting {rows - errors:,} {spec.table}")
            imported = conn.execute(checks.insert_statement(errors > 0)).rowcount
            kept = _first_errors(conn, KEPT) if errors else []
            if rejects is not None:
                _say(stage, f"writing {errors:,} rejected rows to {rejects}")
                pending = _write_rejects(conn, checks, rejects)
        if pending is not None and rejects is not None:
            os.replace(pending, rejects)
            pending = None
    finally:
        if pending is not None:
            pending.unlink(missing_ok=True)
    return ImportResult(spec.table, rows, imported, errors, rejects, kept)


# --- the header -----------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    columns: tuple[str, ...]  # canonical names, in file order
    skip: int  # bytes of a byte order mark to leave out
    size: int  # bytes in the file


def read_header(path: Path, spec: Spec) -> Header:
    """The file's header, checked; :class:`InvalidInput` for an unreadable or empty
    file, a header that is not UTF-8, and unknown, repeated, unnamed or missing
    columns."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = handle.read(CHUNK)
            while b"\n" not in start and len(start) < size and len(start) < 16 * CHUNK:
                more = handle.read(CHUNK)
                if not more:
                    break
                start += more
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror or exc}.") from None
    skip = len(BOM) if start.startswith(BOM) else 0
    first = start[skip:].split(b"\n", 1)[0].rstrip(b"\r")
    if not start[skip:].strip():
        raise InvalidInput(
            f"{path} is empty: a {spec.noun} file starts with a header line naming its "
            f"columns, e.g. {','.join(spec.names()[1:5])}."
        )
    if b"\x00" in first:
        raise InvalidInput(f"{path} is not a UTF-8 text file (line 1 has a NUL byte).")
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path} is not UTF-8 (line 1 has the byte 0x{first[exc.start]:02x}); "
            "save it as CSV UTF-8 and import it again."
        ) from None
    names = next(csv.reader([text]), [])
    return Header(_checked_columns(path, spec, names), skip, size)


def _checked_columns(path: Path, spec: Spec, names: list[str]) -> tuple[str, ...]:
    known = spec.names()
    found: list[str] = []
    for position, raw in enumerate(names, start=1):
        name = raw.strip().lower()
        if not name:
            raise InvalidInput(f"Column {position} of the header of {path} has no name.")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            delimited = len(names) == 1 and any(d in raw for d in ";\t|")
            if delimited:
                hint = " (the file seems to use another delimiter than the comma)"
            raise InvalidInput(
                f"Unknown column '{raw.strip()}' in the header of {path}{hint}; a {spec.noun} "
                f"file may have: {', '.join(known)}."
            )
        if name in found:
            raise InvalidInput(f"Column '{name}' appears twice in the header of {path}.")
        found.append(name)
    if not set(found) & set(spec.needs_one_of):
        raise InvalidInput(
            f"The header of {path} has none of the columns {', '.join(spec.needs_one_of)}: "
            f"a {spec.noun} needs {spec.needs_text}."
        )
    if spec is CONTACTS and not {"lead_id", "client_id"} & set(found):
        raise InvalidInput(
            f"The header of {path} has neither lead_id nor client_id: every contact belongs "
            "to one lead or one client."
        )
    return tuple(found)


# --- the upload -----------------------------------------------------------------


def _upload(conn: Connection, path: Path, header: Header, progress: Progress | None) -> int:
    """Stream the file into the staging table; the number of rows staged."""
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true, ENCODING 'UTF8')").format(
        STAGING, sql.SQL(", ").join(sql.Identifier(c) for c in header.columns)
    )
    checker = _Utf8Check(path)
    done = header.skip
    try:
        with path.open("rb") as handle, conn.cursor() as cur:
            handle.seek(header.skip)
            with cur.copy(copy_sql) as copy:
                for chunk in _chunks(handle):
                    checker.feed(chunk)
                    copy.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(min(done, header.size), header.size)
                checker.close()
            rows = cur.rowcount
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except psycopg.DataError as exc:  # ragged rows, an unclosed quote
        raise _copy_refusal(path, exc, header) from None
    if progress is not None:
        progress(header.size, header.size)
    return rows


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The file in chunks, without the line breaks at its very end (COPY needs no
    final one, and blank lines there would read as rows of one empty field)."""
    held = b""
    while chunk := handle.read(CHUNK):
        chunk = held + chunk
        body = chunk.rstrip(b"\r\n")
        held = chunk[len(body) :]
        if body:
            yield body


class _Utf8Check:
    """Refuses bytes that are not UTF-8 (or are NUL), naming the line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.lines = 1

    def feed(self, chunk: bytes) -> None:
        try:
            self.decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            position = max(exc.start - len(self.decoder.getstate()[0]), 0)
            line = self.lines + chunk.count(b"\n", 0, position)
            raise InvalidInput(
                f"{self.path} is not UTF-8 (line {line} has the byte "
                f"0x{chunk[position]:02x}); nothing was imported. Save it as CSV UTF-8 "
                "and import it again."
            ) from None
        nul = chunk.find(b"\x00")
        if nul >= 0:
            line = self.lines + chunk.count(b"\n", 0, nul)
            raise InvalidInput(
                f"{self.path} is not a text file (line {line} has a NUL byte); nothing "
                "was imported."
            )
        self.lines += chunk.count(b"\n")

    def close(self) -> None:
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{self.path} is not UTF-8 (its last line ends inside a character); "
                "nothing was imported."
            ) from None


COPY_LINE = re.compile(r"\bline (\d+)")


def _copy_refusal(path: Path, exc: psycopg.Error, header: Header) -> InvalidInput:
    diag = exc.diag
    primary = (diag.message_primary or str(exc).splitlines()[0]).rstrip(".")
    match = COPY_LINE.search(diag.context or "")
    where = f"line {match.group(1)}" if match else "a line"
    expected = len(header.columns)
    if primary.startswith("extra data after last expected column"):
        reason = f"{where} has more fields than the header's {expected}"
    elif primary.startswith("missing data for column"):
        reason = f"{where} has fewer fields than the header's {expected}"
    elif primary.startswith("unterminated CSV quoted field"):
        reason = f"{where} opens a quoted field that is never closed"
    elif primary.startswith(("unquoted carriage return", "unquoted newline")):
        reason = (
            f"{where} ends its line differently from the first line (\\r\\n and \\n mixed); "
            "save the file with one kind of line break"
        )
    else:
        reason = f"{where} cannot be read: {primary}"
    return InvalidInput(f"{path}: {reason}; nothing was imported.")


# --- the checks -----------------------------------------------------------------


class Checks:
    """The SQL of one import: the staging table, the checks, the insert."""

    def __init__(
        self,
        spec: Spec,
        columns: tuple[str, ...],
        has_input_check: bool,
        settable: tuple[str, ...] = OPEN_STATUSES,
    ) -> None:
        self.spec = spec
        self.columns = columns
        self.has_input_check = has_input_check
        self.settable = settable  # the statuses a row may have (lead_statuses, 008)

    def has(self, name: str) -> bool:
        return name in self.columns

    def create_staging(self, conn: Connection) -> None:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}, pg_temp.{}").format(STAGING, ERRORS))
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (line bigint GENERATED ALWAYS AS IDENTITY (START 2), {}) "
                "ON COMMIT DROP"
            ).format(
                STAGING,
                sql.SQL(", ").join(
                    sql.SQL("{} text").format(sql.Identifier(c)) for c in self.columns
                ),
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (seq bigint GENERATED ALWAYS AS IDENTITY, "
                "line bigint NOT NULL, reason text NOT NULL) ON COMMIT DROP"
            ).format(ERRORS)
        )
        if not self.has_input_check:
            for name in sorted(set(TYPES.values())):
                conn.execute(VALIDATORS_15.format(name=name).encode())

    # Expressions over the staging row ``s``.

    def raw(self, name: str) -> sql.Composable:
        return sql.SQL("s.{}").format(sql.Identifier(name))

    def value(self, name: str) -> sql.Composable:
        """The field, trimmed, NULL when blank."""
        return sql.SQL("nullif(btrim(s.{}, {}), '')").format(
            sql.Identifier(name), sql.Literal(BLANKS)
        )

    def valid(self, expr: sql.Composable, type_name: str) -> sql.Composable:
        if self.has_input_check:
            return sql.SQL("pg_input_is_valid({}, {})").format(expr, sql.Literal(type_name))
        return sql.SQL("pg_temp.{}({})").format(sql.Identifier(f"aicrm_valid_{type_name}"), expr)

    def typed(self, name: str) -> sql.Composable:
        """The field cast to its type when valid, else NULL (for joins)."""
        type_name = TYPES[self.spec.kind(name)]
        v = self.value(name)
        return sql.SQL("CASE WHEN {valid} THEN {v}::{t} END").format(
            valid=self.valid(v, type_name), v=v, t=sql.SQL(type_name)
        )

    def shown(self, name: str) -> sql.Composable:
        """The field as it reads in a message: quoted, cut at 60 characters."""
        return sql.SQL("quote_literal(left({}, 60))").format(self.raw(name))

    def field_checks(self) -> tuple[list[sql.Composable], list[sql.Composable]]:
        """Expressions that are a reason (text) or NULL, and the joins they need."""
        spec = self.spec
        checks: list[sql.Composable] = []
        joins: list[sql.Composable] = []
        present = [n for n in spec.needs_one_of if self.has(n)]
        checks.append(
            sql.SQL("CASE WHEN {} THEN {} END").format(
                sql.SQL(" AND ").join(sql.SQL("{} IS NULL").format(self.value(n)) for n in present),
                sql.Literal(f"a {spec.noun} needs {spec.needs_text}"),
            )
        )
        for name in self.columns:
            kind = spec.kind(name)
            v = self.value(name)
            if kind == "email":
                checks.append(
                    sql.SQL(
                        "CASE WHEN {v} !~ {pattern} THEN format('%s %s is not a valid email "
                        "address (expected name@domain.tld)', {col}, {shown}) END"
                    ).format(
                        v=v,
                        pattern=sql.Literal(EMAIL_PATTERN),
                        col=sql.Literal(name),
                        shown=self.shown(name),
                    )
                )
            elif kind == "status":
                checks.append(
                    sql.SQL(
                        "CASE WHEN {v} = 'converted' THEN {converted} "
                        "WHEN {v} <> ALL({known}) THEN format('status %s is not a lead status "
                        "(use one of %s)', {shown}, {listed}) END"
                    ).format(
                        v=v,
                        converted=sql.Literal(
                            "status 'converted' is set only by converting a lead "
                            "('aicrm leads convert'), not by an import"
                        ),
                        known=sql.Literal(list(self.settable)),
                        listed=sql.Literal(", ".join(self.settable)),
                        shown=self.shown(name),
                    )
                )
            elif kind == "empty":
                checks.append(
                    sql.SQL("CASE WHEN {v} IS NOT NULL THEN {reason} END").format(
                        v=v,
                        reason=sql.Literal(
                            f"{name} is set: a converted lead cannot be imported (convert it "
                            "after the import)"
                        ),
                    ),
                )
            elif kind == "false":
                checks.append(
                    sql.SQL(
                        "CASE WHEN {v} IS NULL THEN NULL WHEN NOT {valid} THEN format("
                        "'{name} %s is not true or false', {shown}) WHEN {v}::boolean THEN "
                        "'is_converted is true: a converted lead cannot be imported (convert "
                        "it after the import)' END"
                    ).format(
                        v=v,
                        valid=self.valid(v, "boolean"),
                        name=sql.SQL(name),
                        shown=self.shown(name),
                    )
                )
            elif kind in ("id", "lead", "client", "real", "time"):
                what = {
                    "id": "is not a UUID",
                    "lead": "is not a UUID",
                    "client": "is not a UUID",
                    "real": "is not a number",
                    "time": "is not a date and time (ISO 8601)",
                }[kind]
                checks.append(
                    sql.SQL(
                        "CASE WHEN NOT {valid} THEN format('{name} %s {what}', {shown}) END"
                    ).format(
                        valid=self.valid(v, TYPES[kind]),
                        name=sql.SQL(name),
                        what=sql.SQL(what),
                        shown=self.shown(name),
                    )
                )
            elif kind == "json":
                checks.append(
                    sql.SQL(
                        "CASE WHEN NOT {valid} THEN '{name} is not valid JSON' "
                        "WHEN jsonb_typeof({v}::jsonb) <> 'object' THEN "
                        '\'{name} must be a JSON object, like {{"key": "value"}}\' END'
                    ).format(valid=self.valid(v, "jsonb"), v=v, name=sql.SQL(name))
                )
        if self.has("id"):
            joins.append(
                sql.SQL("LEFT JOIN {} taken ON taken.id = {}").format(
                    sql.Identifier(spec.table), self.typed("id")
                )
            )
            checks.append(
                sql.SQL(
                    "CASE WHEN taken.id IS NOT NULL THEN format('id %s is already taken by a "
                    "{noun}', taken.id) END"
                ).format(noun=sql.SQL(spec.noun))
            )
        if spec is CONTACTS:
            checks.append(self._one_parent())
            for name, table, alias in (
                ("lead_id", "leads", "parent_lead"),
                ("client_id", "clients", "parent_client"),
            ):
                if not self.has(name):
                    continue
                joins.append(
                    sql.SQL("LEFT JOIN {} {} ON {}.id = {}").format(
                        sql.Identifier(table),
                        sql.Identifier(alias),
                        sql.Identifier(alias),
                        self.typed(name),
                    )
                )
                checks.append(
                    sql.SQL(
                        "CASE WHEN {typed} IS NOT NULL AND {alias}.id IS NULL THEN "
                        "format('no {noun} has id %s', {typed}) END"
                    ).format(
                        typed=self.typed(name),
                        alias=sql.Identifier(alias),
                        noun=sql.SQL(table[:-1]),
                    )
                )
        return checks, joins

    def _one_parent(self) -> sql.Composable:
        lead = self.value("lead_id") if self.has("lead_id") else sql.SQL("NULL")
        client = self.value("client_id") if self.has("client_id") else sql.SQL("NULL")
        return sql.SQL(
            "CASE WHEN {lead} IS NULL AND {client} IS NULL THEN "
            "'a contact needs a lead_id or a client_id' "
            "WHEN {lead} IS NOT NULL AND {client} IS NOT NULL THEN "
            "'a contact belongs to one lead or one client, not both' END"
        ).format(lead=lead, client=client)

    def run(self, conn: Connection, allow_duplicates: bool, rows: int) -> int:
        """Record every invalid row in the errors table; how many there are."""
        checks, joins = self.field_checks()
        conn.execute(
            sql.SQL(
                "INSERT INTO {errors} (line, reason) SELECT line, reason FROM ("
                "SELECT s.line, concat_ws('; ', {checks}) AS reason FROM {staging} s {joins}"
                ") AS checked WHERE reason <> ''"
            ).format(
                errors=ERRORS,
                checks=sql.SQL(", ").join(checks),
                staging=STAGING,
                joins=sql.SQL(" ").join(joins),
            )
        )
        if self.has("id"):
            conn.execute(self._repeated_ids())
        if not allow_duplicates and self.has("email"):
            if rows <= LOCK_LIMIT:
                conn.execute(self._email_locks())
            conn.execute(self._duplicates())
        row = conn.execute(sql.SQL("SELECT count(DISTINCT line) FROM {}").format(ERRORS)).fetchone()
        assert row is not None
        count: int = row[0]
        if count:
            conn.execute(sql.SQL("CREATE INDEX ON {} (line)").format(ERRORS))
            conn.execute(sql.SQL("ANALYZE {}").format(ERRORS))
        return count

    def _repeated_ids(self) -> sql.Composed:
        return sql.SQL(
            "INSERT INTO {errors} (line, reason) "
            "SELECT s.line, format('id %s is also on line %s', r.id, r.first) "
            "FROM {staging} s JOIN ("
            "  SELECT {typed} AS id, min(s.line) AS first FROM {staging} s "
            "  WHERE {typed} IS NOT NULL GROUP BY 1 HAVING count(*) > 1"
            ") r ON r.id = {typed} WHERE s.line <> r.first"
        ).format(errors=ERRORS, staging=STAGING, typed=self.typed("id"))

    def _email_locks(self) -> sql.Composed:
        # The lock of aicrm.crm.duplicates.LOCK_EMAIL, taken in one order.
        return sql.SQL(
            "SELECT count(pg_advisory_xact_lock(k)) FROM ("
            "SELECT DISTINCT hashtext('aicrm:email:' || lower({v})) AS k FROM {staging} s "
            "WHERE {v} IS NOT NULL ORDER BY 1) AS keys"
        ).format(v=self.value("email"), staging=STAGING)

    def _duplicates(self) -> sql.Composed:
        """Duplicate emails of rows that passed the field checks: within the file
        (every row after the first one with that email; for contacts, not other
        contacts of that same lead) and against the leads and contacts in the
        database (aicrm.crm.duplicates' rule: a contact of a lead may share the
        lead's email, and its other contacts')."""
        lead = self.typed("lead_id") if self.has("lead_id") else sql.SQL("NULL::uuid")
        return sql.SQL("""
WITH c AS MATERIALIZED (
    SELECT s.line, {v} AS email, lower({v}) AS key, {lead} AS lead_id
    FROM {staging} s
    WHERE {v} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {errors} e WHERE e.line = s.line)
), repeated AS (
    SELECT DISTINCT ON (c.key) c.key, c.line AS first, c.lead_id AS first_lead
    FROM c WHERE c.key IN (SELECT key FROM c GROUP BY key HAVING count(*) > 1)
    ORDER BY c.key, c.line
), found AS (
    SELECT c.line, format('email %s is also on line %s', c.email, r.first) AS reason
    FROM c JOIN repeated r USING (key)
    WHERE c.line <> r.first AND (c.lead_id IS NULL OR c.lead_id IS DISTINCT FROM r.first_lead)
    UNION ALL
    SELECT c.line, format('email %s already belongs to lead %s', c.email, min(l.id::text))
    FROM c JOIN leads l ON lower(l.email) = c.key AND l.id IS DISTINCT FROM c.lead_id
    GROUP BY c.line, c.email
    UNION ALL
    SELECT c.line, format('email %s already belongs to contact %s', c.email, min(x.id::text))
    FROM c JOIN contacts x ON lower(x.email) = c.key
     AND (c.lead_id IS NULL OR x.lead_id IS DISTINCT FROM c.lead_id)
    GROUP BY c.line, c.email
)
INSERT INTO {errors} (line, reason) SELECT line, reason FROM found
""").format(v=self.value("email"), lead=lead, staging=STAGING, errors=ERRORS)

    # The insert.

    def insert_statement(self, skip_errors: bool) -> sql.Composed:
        """One INSERT … SELECT of the valid rows, in the order of their ids: the
        primary key, the (created_at, id) index and the history's row index then
        grow at their right edge instead of at random places (less I/O and WAL)."""
        names = ["id"]
        values: list[sql.Composable] = [
            sql.SQL("coalesce({}::uuid, gen_random_uuid())").format(self.value("id"))
            if self.has("id")
            else sql.SQL("gen_random_uuid()")
        ]
        for name in self.columns:
            kind = self.spec.kind(name)
            v = self.value(name)
            if kind in ("id", "empty", "false"):
                continue
            names.append(name)
            if kind == "text":
                values.append(self.raw(name))
            elif kind == "email":
                values.append(v)
            elif kind == "status":
                values.append(sql.SQL("coalesce({}, 'new')").format(v))
            elif kind == "json":
                values.append(sql.SQL("coalesce({}::jsonb, '{{}}')").format(v))
            elif kind == "time":
                values.append(sql.SQL("coalesce({}::timestamptz, now())").format(v))
            else:
                values.append(sql.SQL("{}::{}").format(v, sql.SQL(TYPES[kind])))
        where = (
            sql.SQL(" WHERE NOT EXISTS (SELECT 1 FROM {} e WHERE e.line = s.line)").format(ERRORS)
            if skip_errors
            else sql.SQL("")
        )
        return sql.SQL(
            "INSERT INTO {table} ({names}) SELECT {values} FROM {staging} s{where} ORDER BY 1"
        ).format(
            table=sql.Identifier(self.spec.table),
            names=sql.SQL(", ").join(sql.Identifier(n) for n in names),
            values=sql.SQL(", ").join(values),
            staging=STAGING,
            where=where,
        )


# --- results --------------------------------------------------------------------


def _first_errors(conn: Connection, limit: int) -> list[RowError]:
    rows = conn.execute(
        sql.SQL("SELECT line, reason FROM ({}) r ORDER BY line LIMIT %s").format(REASONS),
        (limit,),
    ).fetchall()
    return [RowError(int(line), str(reason)) for line, reason in rows]


def _refusal(conn: Connection, spec: Spec, path: Path, rows: int, count: int) -> InvalidInput:
    errors = _first_errors(conn, KEPT)
    named = "; ".join(f"line {e.line}: {e.reason}" for e in errors[:SHOWN])
    more = f"; and {count - SHOWN:,} more" if count > SHOWN else ""
    return InvalidInput(
        f"{count:,} of the {rows:,} rows of {path} are invalid, so no {spec.noun} was "
        f"imported: {named}{more}. Fix them and import again, or import the valid rows "
        "and write the others to a file (--skip-invalid --rejects FILE).",
        details={"rows": rows, "invalid": count, "errors": [e.to_dict() for e in errors]},
    )


def _write_rejects(conn: Connection, checks: Checks, rejects: Path) -> Path:
    """The rejected rows as CSV (line, reason, the row's fields) in a file next to
    ``rejects``; the caller renames it once the import commits."""
    statement = sql.SQL(
        "COPY (SELECT e.line, e.reason, {fields} FROM ({reasons}) e JOIN {staging} s USING (line) "
        "ORDER BY e.line) TO STDOUT (FORMAT csv, HEADER true, ENCODING 'UTF8')"
    ).format(
        fields=sql.SQL(", ").join(
            sql.SQL("s.{}").format(sql.Identifier(c)) for c in checks.columns
        ),
        reasons=REASONS,
        staging=STAGING,
    )
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed after the commit
            dir=rejects.parent, prefix=f".{rejects.name}.", suffix=".tmp", delete=False
        )
    except OSError as exc:
        raise InvalidInput(
            f"Cannot write the rejects file {rejects}: {exc.strerror or exc}."
        ) from None
    pending = Path(handle.name)
    try:
        with handle, conn.cursor() as cur, cur.copy(statement) as copy:
            for data in copy:
                handle.write(data)
    except OSError as exc:
        pending.unlink(missing_ok=True)
        raise InvalidInput(
            f"Cannot write the rejects file {rejects}: {exc.strerror or exc}."
        ) from None
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    return pending


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        return a.resolve() == b.resolve() or (b.exists() and a.samefile(b))
    return False


def _say(stage: Stage | None, text: str) -> None:
    if stage is not None:
        stage(text)
