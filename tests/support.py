"""Helpers that tests share: comparing databases and waiting for server-side state."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from aicrm.db import tools
from tests.conftest import Database

MIGRATIONS = Path(__file__).resolve().parent.parent / "src" / "aicrm" / "migrations"


def schema_dump(db: Database) -> str:
    """pg_dump --schema-only of the test database, for before/after comparisons."""
    pg_dump = tools.find("pg_dump")
    out = subprocess.run(
        [str(pg_dump.path), "--schema-only", "--no-password", "--dbname", db.url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # PostgreSQL 17.6+/18 writes a random \restrict key into each dump.
    return "\n".join(line for line in out.splitlines() if not line.startswith("\\"))


def table_digests(db: Database) -> dict[str, str]:
    """An md5 of every table's rows (in a stable order), by table name."""
    digests: dict[str, str] = {}
    with db.connect(autocommit=True) as conn:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
            ).fetchall()
        ]
        for table in tables:
            query = sql.SQL(
                "SELECT coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {} t"
            ).format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            digests[table] = str(row[0]) if row else ""
    return digests


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll a server-side condition until it holds (synchronisation on observable
    state, never a fixed sleep); fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def migration_count() -> int:
    """How many migrations the package ships."""
    return sum(
        1 for p in MIGRATIONS.glob("*.sql") if re.fullmatch(r"\d{3}_[a-z0-9_]+\.sql", p.name)
    )


def copy_migrations(target: Path, versions: tuple[int, ...] = (0,)) -> Path:
    """Copy the shipped migrations of the given versions into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for path in MIGRATIONS.glob("*.sql"):
        if int(path.name[:3]) in versions:
            (target / path.name).write_bytes(path.read_bytes())
    return target
