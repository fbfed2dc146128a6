"""Reading numbered migrations from plain SQL files.

A migration ``NNN_name`` is up to three files in one folder:

``NNN_name.sql``
    The change. Lines ``-- step: what it does`` split it into steps that the runner
    times and shows as progress (a marker must not sit inside a ``$$`` body). A
    header line ``-- aicrm:lock t1, t2`` makes the runner take ACCESS EXCLUSIVE locks
    on those tables first, in that order, and time how long it waited for them.
``NNN_name.down.sql``
    The way back to ``NNN-1``, in the same step format (optional).
``NNN_name.checks.sql``
    Named queries, each headed by ``-- name:``, ``-- kind:`` (``integrity``,
    ``verify`` or ``baseline``), optional ``-- severity:`` (``blocking`` or
    ``resolvable``, for integrity checks) and ``-- description:``. A check query
    returns one row per finding, its first column an id; no rows means all clear.

The checksum recorded in the ledger is the SHA-256 of ``NNN_name.sql``.
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
LOCK_DIRECTIVE = re.compile(r"^--\s*aicrm:lock\s+(.+?)\s*$", re.MULTILINE)
CHECK_HEADER = re.compile(r"^--\s*(name|kind|severity|description):\s*(.*?)\s*$")
CHECK_KINDS = ("integrity", "verify", "baseline")
SEVERITIES = ("blocking", "resolvable")


@dataclass(frozen=True)
class Step:
    description: str
    sql: str


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

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"

    def checks_of(self, kind: str) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.kind == kind)


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
            )
        )
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
    return tuple(Step(description, body.strip()) for description, body in pieces)


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
