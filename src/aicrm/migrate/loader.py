"""Reading numbered migrations from plain SQL files.

A migration ``NNN_name`` is up to three files in one folder:

``NNN_name.sql``
    The change. Lines ``-- step: what it does`` split it into steps that the runner
    times and shows as progress (a marker must not sit inside a ``$$`` body). A
    header line ``-- aicrm:lock t1, t2`` makes the runner take ACCESS EXCLUSIVE locks
    on those tables first, in that order, and time how long it waited for them.
    Steps whose body holds the line ``-- aicrm:before-lock`` (they must come first)
    run in the same transaction before those locks: work that reads the tables
    without needing them still (a snapshot's resolution); the steps after the locks
    must then apply what was written meanwhile.
    A header line ``-- aicrm:earlier-checksum HEX`` names the SHA-256 of an earlier
    version of the file that did the same change (kept so that a database that
    applied that version is not reported as drifted); one line per version.
``NNN_name.down.sql``
    The way back to ``NNN-1``, in the same step format (optional).
``NNN_name.checks.sql``
    Named queries, each headed by ``-- name:``, ``-- kind:`` (``integrity``,
    ``verify`` or ``baseline``), optional ``-- severity:`` (``blocking`` or
    ``resolvable``, for integrity checks) and ``-- description:``. A check query
    returns one row per finding, its first column an id; no rows means all clear.

``online/NNN_name.sql``
    The migration's online form (optional; see below).

The checksum recorded in the ledger is the SHA-256 of ``NNN_name.sql``; a ledger
row holding one of the file's ``aicrm:earlier-checksum`` values is not drift.

Autocommit steps
    A step whose body holds the line ``-- aicrm:autocommit`` runs outside any
    transaction: the opt-out for statements PostgreSQL refuses inside one, such as
    ``CREATE INDEX CONCURRENTLY`` (alembic's ``autocommit_block()``). It must be
    idempotent (``IF NOT EXISTS``): a run killed after it runs it again. An
    ``… INDEX CONCURRENTLY IF NOT EXISTS name`` step is retried after dropping an
    invalid index ``name`` left by an interrupted build. Autocommit steps belong to
    online forms only: the transactional form is one transaction by definition.

The online form
    The same change in phases of short transactions, run while the application
    keeps working (``aicrm db migrate --online``). One file, cut into phases by
    ``-- phase:`` lines, each phase cut into steps as above:

    ``-- phase: expand``
        additive, instant DDL and the triggers that apply the new rules to every
        row written from now on; each step in its own short transaction under the
        online ``lock_timeout``, retried with backoff (or an autocommit step).
    ``-- phase: backfill TABLE, TABLE, … by FUNCTION``
        the rows written before, table by table, in batches: ``FUNCTION(table
        text, after uuid, size integer)`` returns ``(last_id uuid, done integer)``
        for the next ``size`` rows after ``after`` (``done`` = 0 when finished).
        Each batch commits with its progress (resumable) with the transaction
        setting ``aicrm.backfill`` = ``on``, which the triggers read to stand aside.
        No steps.
    ``-- phase: contract NAME`` (any number, in file order)
        like expand; ``-- phase: contract NAME (unhurried)`` waits up to the
        online ``ddl_wait`` for its locks (for statements that block no
        application query, such as ``VALIDATE CONSTRAINT``).
    ``-- phase: switch``
        last: one short transaction under ACCESS EXCLUSIVE locks on the
        migration's ``aicrm:lock`` tables, then the ledger row and the
        verification checks in that same transaction.
    ``-- phase: abort``
        the undo of an unfinished run from any phase: one transaction under the
        same locks (``aicrm db downgrade``).

    The recorded phase names are ``expand``, ``backfill:TABLE``,
    ``contract:NAME`` and ``contract:switch``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aicrm.errors import UsageError

FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
STEP_MARKER = re.compile(r"^--\s*step:\s*(.+?)\s*$", re.MULTILINE)
AUTOCOMMIT = re.compile(r"^--\s*aicrm:autocommit\s*$", re.MULTILINE)
BEFORE_LOCK = re.compile(r"^--\s*aicrm:before-lock\s*$", re.MULTILINE)
EARLIER_CHECKSUM = re.compile(r"^--\s*aicrm:earlier-checksum\s+([0-9a-f]{64})\b", re.MULTILINE)
PHASE_MARKER = re.compile(r"^--\s*phase:\s*(.+?)\s*$", re.MULTILINE)
BACKFILL = re.compile(r"^backfill\s+(.+?)\s+by\s+([a-z_][a-z0-9_]*)$")
CONTRACT = re.compile(r"^contract\s+([a-z_][a-z0-9_]*)(\s+\(unhurried\))?$")
LOCK_DIRECTIVE = re.compile(r"^--\s*aicrm:lock\s+(.+?)\s*$", re.MULTILINE)
CHECK_HEADER = re.compile(r"^--\s*(name|kind|severity|description):\s*(.*?)\s*$")
CHECK_KINDS = ("integrity", "verify", "baseline")
SEVERITIES = ("blocking", "resolvable")


@dataclass(frozen=True)
class Step:
    description: str
    sql: str
    autocommit: bool = False
    before_lock: bool = False  # runs before the migration's table locks (same transaction)


@dataclass(frozen=True)
class Phase:
    """A phase of an online form: ``kind`` is ``expand``, ``backfill``, ``contract``
    or ``switch``; ``name`` is the phase recorded in the state table."""

    name: str
    kind: str
    steps: tuple[Step, ...] = ()
    tables: tuple[str, ...] = ()  # backfill: the tables, in order
    function: str = ""  # backfill: the batch function
    unhurried: bool = False  # contract: waits up to ddl_wait for its locks

    @property
    def part(self) -> str:
        """The phase's name in progress lines and pause points (``contract_validate``)."""
        return self.name.replace(":", "_")


@dataclass(frozen=True)
class OnlineForm:
    """A migration's online form (see the module docstring): the forward phases in
    order, the switch last; ``abort`` undoes an unfinished run."""

    path: Path
    phases: tuple[Phase, ...]
    abort: tuple[Step, ...]

    def expanded(self) -> tuple[str, ...]:
        """Every recorded phase name in order (a backfill: one per table)."""
        names: list[str] = []
        for phase in self.phases:
            if phase.kind == "backfill":
                names.extend(f"backfill:{t}" for t in phase.tables)
            else:
                names.append(phase.name)
        return tuple(names)

    def phase(self, name: str) -> Phase:
        """The phase that runs the recorded phase ``name``."""
        for phase in self.phases:
            if phase.name == name or (
                phase.kind == "backfill" and name.removeprefix("backfill:") in phase.tables
            ):
                return phase
        raise UsageError(f"{self.path.name} has no phase {name!r}.")


@dataclass(frozen=True)
class Check:
    name: str
    kind: str
    severity: str
    description: str
    sql: str


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str
    steps: tuple[Step, ...]
    locks: tuple[str, ...]
    down_steps: tuple[Step, ...] | None
    checks: tuple[Check, ...]
    online: OnlineForm | None = None
    earlier_checksums: tuple[str, ...] = ()  # earlier versions of the file, same change

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"

    def checks_of(self, kind: str) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.kind == kind)

    def accepts(self, recorded: str) -> bool:
        """Whether a ledger row's checksum is this file's, now or in an earlier
        version that made the same change (not drift)."""
        return recorded == self.checksum or recorded in self.earlier_checksums


def default_dir() -> Path:
    """The migrations shipped inside the installed package."""
    return Path(str(resources.files("aicrm") / "migrations"))


def load(folder: Path | None = None) -> list[Migration]:
    """Read every migration in ``folder`` (default: the packaged ones), by version.

    Raises :class:`UsageError` for a gap or a duplicate in the numbering, or a
    malformed checks file: the engine refuses to run an ambiguous plan.
    """
    folder = folder or default_dir()
    migrations: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if not match:
            continue  # .down.sql, .checks.sql and other files
        version, name = int(match.group(1)), match.group(2)
        text = path.read_text(encoding="utf-8")
        down = path.with_name(f"{path.stem}.down.sql")
        checks = path.with_name(f"{path.stem}.checks.sql")
        migrations.append(
            Migration(
                version=version,
                name=name,
                path=path,
                checksum=checksum(path),
                steps=split_steps(text, path.name),
                locks=_locks(text),
                down_steps=split_steps(down.read_text("utf-8"), down.name)
                if down.exists()
                else None,
                checks=parse_checks(checks.read_text("utf-8"), checks.name)
                if checks.exists()
                else (),
                online=parse_online(online)
                if (online := folder / "online" / path.name).exists()
                else None,
                earlier_checksums=tuple(EARLIER_CHECKSUM.findall(text)),
            )
        )
        _no_autocommit(migrations[-1])
        _before_lock_first(migrations[-1])
    for expected, migration in enumerate(migrations):
        if migration.version != expected:
            raise UsageError(
                f"Migrations in {folder} must be numbered 000, 001, … without gaps or "
                f"duplicates; found {migration.path.name} where {expected:03d} was expected."
            )
    return migrations


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_steps(text: str, source: str) -> tuple[Step, ...]:
    """Split a migration's SQL at its ``-- step:`` markers (text before the first
    marker that holds SQL becomes a step of its own)."""
    marks = list(STEP_MARKER.finditer(text))
    pieces: list[tuple[str, str]] = []
    head = text[: marks[0].start()] if marks else text
    if _has_sql(head):
        pieces.append((f"{source}", head))
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
        body = text[mark.end() : end]
        if _has_sql(body):
            pieces.append((mark.group(1), body))
    return tuple(
        Step(
            description,
            body.strip(),
            bool(AUTOCOMMIT.search(body)),
            bool(BEFORE_LOCK.search(body)),
        )
        for description, body in pieces
    )


def _no_autocommit(migration: Migration) -> None:
    for step in (*migration.steps, *(migration.down_steps or ())):
        if step.autocommit:
            raise UsageError(
                f"{migration.label}: step '{step.description}' is an autocommit step; those "
                "belong in the online form (online/NNN_name.sql): the transactional form "
                "runs in one transaction."
            )


def _before_lock_first(migration: Migration) -> None:
    first_locked = next((i for i, s in enumerate(migration.steps) if not s.before_lock), None)
    late = first_locked is not None and any(s.before_lock for s in migration.steps[first_locked:])
    if late or any(s.before_lock for s in migration.down_steps or ()):
        raise UsageError(
            f"{migration.label}: '-- aicrm:before-lock' steps must be the up file's first "
            "steps (they run before the table locks)."
        )


def parse_online(path: Path) -> OnlineForm:
    """Read an online form (see the module docstring). Raises :class:`UsageError`
    for an unknown phase, a phase out of place, or no switch at the end."""
    text = path.read_text("utf-8")
    marks = list(PHASE_MARKER.finditer(text))
    phases: list[Phase] = []
    abort: tuple[Step, ...] | None = None
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
        head, body = mark.group(1), text[mark.end() : end]
        steps = split_steps(body, f"{path.name} ({head})")
        if abort is not None or (phases and phases[-1].kind == "switch" and head != "abort"):
            raise UsageError(f"{path.name}: phase '{head}' comes after the switch or the abort.")
        if head == "expand":
            phases.append(Phase("expand", "expand", steps))
        elif head == "switch":
            phases.append(Phase("contract:switch", "switch", steps))
        elif head == "abort":
            abort = steps
        elif found := BACKFILL.match(head):
            tables = tuple(t.strip() for t in found.group(1).split(",") if t.strip())
            phases.append(Phase("backfill", "backfill", (), tables, found.group(2)))
        elif found := CONTRACT.match(head):
            name = f"contract:{found.group(1)}"
            phases.append(Phase(name, "contract", steps, unhurried=bool(found.group(2))))
        else:
            raise UsageError(
                f"{path.name}: unknown phase '{head}' (expand, backfill TABLES by FUNCTION, "
                "contract NAME [(unhurried)], switch, abort)."
            )
    if not phases or phases[0].kind != "expand" or phases[-1].kind != "switch":
        raise UsageError(f"{path.name}: an online form starts with expand and ends with switch.")
    return OnlineForm(path, tuple(phases), abort or ())


def _has_sql(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def _locks(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for directive in LOCK_DIRECTIVE.finditer(text):
        found.extend(name.strip() for name in directive.group(1).split(",") if name.strip())
    return tuple(found)


def parse_checks(text: str, source: str) -> tuple[Check, ...]:
    """Parse a checks file into named checks (see the module docstring)."""
    checks: list[Check] = []
    header: dict[str, str] = {}
    body: list[str] = []

    def close() -> None:
        if not header:
            return
        query = "\n".join(body).strip().rstrip(";").strip()
        name = header.get("name", "")
        kind = header.get("kind", "")
        severity = header.get("severity", "blocking" if kind == "integrity" else "")
        if not name or kind not in CHECK_KINDS or not query:
            raise UsageError(
                f"{source}: check {name or '(unnamed)'} needs a name, a kind among "
                f"{', '.join(CHECK_KINDS)} and a query."
            )
        if kind == "integrity" and severity not in SEVERITIES:
            raise UsageError(f"{source}: check {name} has an unknown severity {severity!r}.")
        checks.append(Check(name, kind, severity, header.get("description", name), query))

    for line in text.splitlines():
        match = CHECK_HEADER.match(line)
        if match:
            if match.group(1) == "name" and body and any(x.strip() for x in body):
                close()
                header, body = {}, []
            header[match.group(1)] = match.group(2)
        else:
            body.append(line)
    close()
    return tuple(checks)
