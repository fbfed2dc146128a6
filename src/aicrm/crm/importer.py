"""CSV import of leads and contacts: COPY into a staging table, checks in SQL, one INSERT.

This module runs an import; the file is read by :mod:`aicrm.crm._import_file`, the
columns a file may have are :mod:`aicrm.crm._import_spec`'s, each column's check and
inserted value come from its kind (:mod:`aicrm.crm._import_kinds`), and the SQL that
stages, checks and inserts is :mod:`aicrm.crm._import_checks`'.

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
5. leads without an owner get one from the assignment rules, round-robin, by a few
   set-based statements (:mod:`aicrm.crm._import_owners`);
6. the valid rows go in with one ``INSERT … SELECT``; the history triggers record
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

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql
from psycopg.types.json import Jsonb

from aicrm.crm import (
    _import_history as import_history,
    _import_mapping as import_mapping,
    _import_owners as import_owners,
    session,
    statuses,
)
from aicrm.crm._import_checks import ERRORS, LOCK_LIMIT, STAGING, Checks
from aicrm.crm._import_file import Progress, read_header, upload
from aicrm.crm._import_history import LEADS_HISTORY
from aicrm.crm._import_mapping import Mapping
from aicrm.crm._import_spec import CONTACTS, LEADS, Column, Parent, Spec
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput

__all__ = [
    "CONTACTS",
    "LEADS",
    "LEADS_HISTORY",
    "LOCK_LIMIT",
    "Checks",
    "Column",
    "ImportResult",
    "Parent",
    "Progress",
    "RowError",
    "Spec",
    "Stage",
    "import_contacts",
    "import_csv",
    "import_leads",
    "read_header",
]

# A mapping's value translation of one staged column (a value it does not list is kept).
TRANSLATE = "UPDATE {staging} SET {column} = coalesce(%s::jsonb ->> btrim({column}), {column})"
SHOWN = 5  # errors named in the message of a refused import
KEPT = 100  # errors kept in the result and in the exception's details
WORK_MEM = "128MB"  # for the hash aggregates and joins of the checks

# One row per rejected line, its reasons in the order they were found.
REASONS = sql.SQL(
    "SELECT line, string_agg(reason, '; ' ORDER BY seq) AS reason FROM {} GROUP BY line"
).format(ERRORS)
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
    (:mod:`aicrm.crm._import_mapping`). The rejects file, when given, is
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
            rows = upload(conn, source, header, progress)
            if mapped is not None:
                _translate(conn, checks, mapped)
            _say(stage, f"checking {rows:,} rows")
            errors = checks.run(conn, allow_duplicates, rows)
            if errors and not skip_invalid:
                raise _refusal(conn, spec, source, rows, errors)
            if spec.history:
                _say(stage, "creating the clients of past conversions")
                _prepare_history(conn, checks, errors > 0)
            if spec.assigned:
                _say(stage, "dealing owners by the assignment rules")
                checks.dealt = import_owners.deal(conn, checks, errors > 0)
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


def _translate(conn: Connection, checks: Checks, mapping: Mapping) -> None:
    """The mapping's value translations, applied to the staged fields."""
    for column, values in mapping.values.items():
        if checks.has(column):
            conn.execute(
                sql.SQL(TRANSLATE).format(staging=STAGING, column=sql.Identifier(column)),
                (Jsonb(values),),
            )


# --- historical imports (aicrm.crm._import_history) -----------------------------


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
