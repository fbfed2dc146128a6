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
from psycopg.types.json import Jsonb

from aicrm.crm import import_history, import_mapping, session, statuses
from aicrm.crm.import_checks import ERRORS, LOCK_LIMIT, STAGING, Checks
from aicrm.crm.import_mapping import Mapping
from aicrm.crm.import_spec import CONTACTS, LEADS, TYPES, Column, Parent, Spec
from aicrm.db import Connection
from aicrm.db.errors import primary_message, translated
from aicrm.errors import InvalidInput

__all__ = [
    "CONTACTS",
    "LEADS",
    "LEADS_HISTORY",
    "LOCK_LIMIT",
    "TYPES",
    "Checks",
    "Column",
    "ImportResult",
    "Parent",
    "RowError",
    "Spec",
    "import_contacts",
    "import_csv",
    "import_leads",
    "read_header",
]

LEADS_HISTORY = import_history.historical(LEADS)  # a historical import's lead file
HISTORY_ONLY = frozenset(LEADS_HISTORY.names()) - frozenset(LEADS.names())
# A mapping's value translation of one staged column (a value it does not list is kept).
TRANSLATE = "UPDATE {staging} SET {column} = coalesce(%s::jsonb ->> btrim({column}), {column})"
CHUNK = 1 << 20  # bytes per COPY write
SHOWN = 5  # errors named in the message of a refused import
KEPT = 100  # errors kept in the result and in the exception's details
WORK_MEM = "128MB"  # for the hash aggregates and joins of the checks

# One row per rejected line, its reasons in the order they were found.
REASONS = sql.SQL(
    "SELECT line, string_agg(reason, '; ' ORDER BY seq) AS reason FROM {} GROUP BY line"
).format(ERRORS)
BOM = codecs.BOM_UTF8

Progress = Callable[[int, int], None]
Stage = Callable[[str], None]


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


@translated()
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


@translated()
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


@translated()
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
    mapping: str | os.PathLike[str] | None = None,
) -> ImportResult:
    """Import the CSV file at ``path`` into ``spec``'s table (:data:`LEADS`,
    :data:`LEADS_HISTORY` or :data:`CONTACTS`); see :func:`import_leads`. ``mapping``
    names a JSON file mapping another CRM's columns and values onto aicrm's
    (:mod:`aicrm.crm.import_mapping`). The rejects file, when given, is
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
    mapped = import_mapping.load(Path(mapping)) if mapping is not None else None
    header = read_header(source, spec, mapped)
    checks = Checks(
        spec,
        header.columns,
        conn.info.server_version >= 160000,
        staged=header.staged,
        attributes=header.attributes,
        settable=tuple(statuses.names(conn, "open", "lost")),
    )
    pending: Path | None = None
    try:
        with session.transaction(conn, actor):
            conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)))
            checks.create_staging(conn)
            rows = _upload(conn, source, header, progress)
            if mapped is not None:
                _translate(conn, checks, mapped)
            _say(stage, f"checking {rows:,} rows")
            errors = checks.run(conn, allow_duplicates, rows)
            if errors and not skip_invalid:
                raise _refusal(conn, spec, source, rows, errors)
            if spec.history:
                _say(stage, "creating the clients of past conversions")
                _prepare_history(conn, checks, errors > 0)
            _say(stage, f"inserting {rows - errors:,} {spec.table}")
            imported = conn.execute(checks.insert_statement(errors > 0)).rowcount
            if spec.history:
                _say(stage, "writing the history as it happened")
                _write_history(conn, checks)
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
    # every column of the file, in order, as staged: the canonical names and, with a
    # mapping, aicrm_attr_N (an attribute) or aicrm_skip_N (ignored)
    staged: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()  # (staged column, attribute key)


def read_header(path: Path, spec: Spec, mapping: Mapping | None = None) -> Header:
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
    if mapping is None:
        columns = _checked_columns(path, spec, names)
        return Header(columns, skip, size, columns)
    staged: list[str] = []
    attributes: list[tuple[str, str]] = []
    mapped: list[str] = []
    for position, raw in enumerate(names, start=1):
        target = mapping.target(raw, path)
        if target == import_mapping.IGNORE:
            staged.append(f"aicrm_skip_{position}")
        elif target.startswith(import_mapping.ATTRIBUTE):
            staged.append(f"aicrm_attr_{position}")
            attributes.append((staged[-1], target[len(import_mapping.ATTRIBUTE) :]))
        else:
            staged.append(target.lower())
            mapped.append(target)
    columns = _checked_columns(path, spec, mapped)
    return Header(columns, skip, size, tuple(staged), tuple(attributes))


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
            elif not spec.history and name in HISTORY_ONLY and spec.cls is LEADS.cls:
                hint = " (a column of a historical import: add --historical)"
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
    spec.check_parents(path, set(found))
    return tuple(found)


# --- the upload -----------------------------------------------------------------


def _upload(conn: Connection, path: Path, header: Header, progress: Progress | None) -> int:
    """Stream the file into the staging table; the number of rows staged."""
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true, ENCODING 'UTF8')").format(
        STAGING, sql.SQL(", ").join(sql.Identifier(c) for c in header.staged)
    )
    checker = _Utf8Check(path)
    done = header.skip

    def refused(exc: psycopg.Error) -> InvalidInput | None:
        """Ragged rows, an unclosed quote: the line and what is wrong with it."""
        return _copy_refusal(path, exc, header) if isinstance(exc, psycopg.DataError) else None

    try:
        with translated(refused), path.open("rb") as handle, conn.cursor() as cur:
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
    primary = primary_message(exc).rstrip(".")
    match = COPY_LINE.search(exc.diag.context or "")
    where = f"line {match.group(1)}" if match else "a line"
    expected = len(header.staged)
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


def _translate(conn: Connection, checks: Checks, mapping: Mapping) -> None:
    """The mapping's value translations, applied to the staged fields."""
    for column, values in mapping.values.items():
        if checks.has(column):
            conn.execute(
                sql.SQL(TRANSLATE).format(staging=STAGING, column=sql.Identifier(column)),
                (Jsonb(values),),
            )


# --- historical imports (aicrm.crm.import_history) -----------------------------


def _prepare_history(conn: Connection, checks: Checks, skip_errors: bool) -> None:
    """Every row's lead id, and for a conversion to a new client that client, made
    before the insert; the new clients inserted, created at their conversion."""
    values = checks.history_values()
    conn.execute(sql.SQL(import_history.ADD_KEYS).format(staging=STAGING))
    conn.execute(sql.SQL(import_history.SET_KEYS).format(staging=STAGING, **values))

    def text(name: str) -> sql.Composable:
        return checks.value(name) if checks.has(name) else sql.SQL("NULL::text")

    valid = (
        sql.SQL("AND NOT EXISTS (SELECT 1 FROM {} e WHERE e.line = s.line)").format(ERRORS)
        if skip_errors
        else sql.SQL("")
    )
    conn.execute(
        sql.SQL(import_history.NEW_CLIENTS).format(
            staging=STAGING,
            valid=valid,
            client_name=values["client_name"],
            company=text("company_name"),
            first_name=text("first_name"),
            last_name=text("last_name"),
            email=text("email"),
            conv=values["conv"],
        )
    )


def _write_history(conn: Connection, checks: Checks) -> None:
    """The creations the triggers recorded now moved to their moments, and one update
    row per dated status change."""
    values = checks.history_values()
    conn.execute(sql.SQL(import_history.MOVE_LEAD_CREATION).format(staging=STAGING))
    conn.execute(sql.SQL(import_history.MOVE_CLIENT_CREATION).format(staging=STAGING))
    conn.execute(sql.SQL(import_history.STATUS_CHANGES).format(staging=STAGING, **values))


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
        fields=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in checks.staged),
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
