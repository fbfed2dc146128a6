"""Helpers of the online-mode tests (no tests here): twin databases, end-state
snapshots to compare an online run with the transactional one, and killing a
runner at a chosen point (AICRM_ONLINE_PAUSE_AT and the pause lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from aicrm.migrate._lock import CLASS_ID
from aicrm.migrate._online import PAUSE_ENV, PAUSE_OBJECT
from tests.conftest import Database, create_database, drop_database
from tests.migrations.legacy import ROWS_AS_JSON
from tests.support import schema_dump, wait_for

ARCHIVE = (
    "SELECT table_name, row_id::text, column_name, referenced_id::text, reason "
    "FROM migration_001_link_archive"
)
OWN_TABLES = (
    "leads",
    "clients",
    "contacts",
    "migration_001_orphan_contacts",
    "migration_001_legacy_values",
    "migration_001_legacy_objects",
)


def twin(db: Database, tag: str) -> Database:
    """A copy of ``db`` (CREATE DATABASE … TEMPLATE) with its own AICRM_HOME and
    backup folder; drop it with :func:`drop_twin`."""
    name = create_database(db.server, f"{db.name}_{tag}", template=db.name)
    work = db.workdir / tag
    (work / "home").mkdir(parents=True)
    url = db.server.conninfo(name)
    env = {
        **db.env,
        "DATABASE_URL": url,
        "AICRM_HOME": str(work / "home"),
        "BACKUP_DIR": str(work / "backups"),
    }
    return Database(name, url, db.server, work, env)


def drop_twin(copy: Database) -> None:
    drop_database(copy.server, copy.name)


def end_state(db: Database) -> dict[str, Any]:
    """What must be equal after the transactional and the online 001: the schema
    (pg_dump --schema-only, the catalog as pg_dump sees it), every row of the CRM's
    tables and of 001's tables (the archive without its generated id and time), the
    ledger's versions, and no leftover of the online run."""
    rows: dict[str, Any] = {}
    for table in OWN_TABLES:
        rows[table] = sorted(
            str(r[0]) for r in db.execute(ROWS_AS_JSON.format(sql.Identifier(table)))
        )
    rows["archive"] = sorted(tuple(map(str, r)) for r in db.execute(ARCHIVE))
    rows["ledger"] = [
        tuple(r) for r in db.execute("SELECT version, kind FROM aicrm_schema_migrations ORDER BY 1")
    ]
    rows["leftovers"] = [
        str(r[0])
        for r in db.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE '%online%' "
            "OR relname = 'migration_001_claims_idx' UNION ALL "
            "SELECT proname FROM pg_proc WHERE proname LIKE 'migration\\_001\\_%'"
        )
    ]
    return {"schema": _schema(db), "rows": rows}


def _schema(db: Database) -> str:
    """pg_dump --schema-only, without per-column ``pg_attver`` options: a server
    we test on (the shared PostgreSQL 15) stamps every new column with one, whose
    value depends on when the column was made, not on what it is."""
    return "\n".join(line for line in schema_dump(db).splitlines() if "SET (pg_attver=" not in line)


def catalog(db: Database) -> list[tuple[str, ...]]:
    """Columns, constraints (with validity) and indexes (with validity) of the three
    tables: a catalog snapshot independent of pg_dump's text."""
    rows = db.execute(
        """
        SELECT 'column', c.relname, a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relname IN ('leads', 'clients', 'contacts') AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT 'constraint', conrelid::regclass::text,
               conname || ' ' || pg_get_constraintdef(oid) || ' valid=' || convalidated
        FROM pg_constraint WHERE conrelid IN ('leads'::regclass, 'clients'::regclass,
                                              'contacts'::regclass)
        UNION ALL
        SELECT 'index', indrelid::regclass::text,
               pg_get_indexdef(indexrelid) || ' valid=' || indisvalid
        FROM pg_index WHERE indrelid IN ('leads'::regclass, 'clients'::regclass,
                                         'contacts'::regclass)
        UNION ALL
        SELECT 'view', c.relname, pg_get_viewdef(c.oid)
        FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = current_schema()::regnamespace
        UNION ALL
        SELECT 'trigger', tgrelid::regclass::text, tgname || ' ' || tgenabled::text
        FROM pg_trigger WHERE NOT tgisinternal
        ORDER BY 1, 2, 3
        """
    )
    return [tuple(map(str, r)) for r in rows]


def aicrm(db: Database, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m aicrm ARGS`` against ``db`` (not waiting for it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "aicrm", *args],
        env={**db.env, **(env or {})},
        cwd=db.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def runner_waiting_at_pause(db: Database) -> bool:
    return bool(
        db.scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = %s::oid AND objid = %s::oid AND objsubid = 2 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            (CLASS_ID, PAUSE_OBJECT),
        )
    )


def no_runner(db: Database) -> bool:
    return not db.scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'aicrm migrate')"
    )


def kill_at(db: Database, point: str, *args: str) -> str:
    """Start ``aicrm db migrate --online ARGS`` paused at ``point``, SIGKILL it there,
    wait until its backend is gone, and return the phase it left recorded."""
    with psycopg.connect(db.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, PAUSE_OBJECT))
        proc = aicrm(db, "db", "migrate", "--online", *args, env={PAUSE_ENV: point})
        try:
            wait_for(
                lambda: runner_waiting_at_pause(db) or proc.poll() is not None,
                f"the runner to reach {point}",
            )
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the runner ended before {point}: {out} {err}")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.communicate()
    wait_for(lambda: no_runner(db), "the killed runner's backend to end")
    return str(db.scalar("SELECT phase FROM aicrm_online_migration") or "")


def migrate(db: Database, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = db.cli("db", "migrate", *args, timeout=timeout)
    assert done.returncode == 0, done.stderr + done.stdout
    return done


def workdir(db: Database) -> Path:
    return db.workdir
