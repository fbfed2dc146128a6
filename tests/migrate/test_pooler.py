"""Through a transaction-pooling PgBouncer: the runner refuses (with advice that
works), its lock still keeps runners apart, and nothing it sets leaks to the pool."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from aicrm import config
from aicrm.db import Target, target
from aicrm.errors import LockHeld
from aicrm.migrate import _lock as lock
from tests.conftest import Database
from tests.support import copy_migrations

PENDING = "-- aicrm:lock leads\n-- step: change leads\nALTER TABLE leads ADD COLUMN extra int;\n"
DEFAULTS = """
SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),
       current_setting('idle_in_transaction_session_timeout'),
       current_setting('client_connection_check_interval'), pg_backend_pid()
"""


def _pooled(db: Database, pgbouncer: str) -> str:
    return make_conninfo(pgbouncer, dbname=db.name)


def _target(db: Database, url: str) -> Target:
    return target(config.resolve({"DATABASE_URL": url, "AICRM_HOME": db.env["AICRM_HOME"]}))


def _at_000_with_pending(db: Database, tmp_path: Path) -> Path:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    (folder / "001_extra.sql").write_text(PENDING)
    return folder


@pytest.mark.slow
def test_migrate_behind_a_pooler_is_refused_and_the_advice_works(
    db: Database, pgbouncer: str, tmp_path: Path
) -> None:
    folder = _at_000_with_pending(db, tmp_path)
    backups = sorted((tmp_path / "backups").glob("*.sql*"))
    pooled = db.cli(
        "db",
        "migrate",
        "--migrations-dir",
        str(folder),
        env={"DATABASE_URL": _pooled(db, pgbouncer)},
    )
    assert pooled.returncode == 2, pooled.stderr
    assert "connect directly to the server" in pooled.stderr
    assert "Traceback" not in pooled.stderr
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0
    assert sorted((tmp_path / "backups").glob("*.sql*")) == backups
    # The advice: the server's own address.
    direct = db.cli("db", "migrate", "--migrations-dir", str(folder))
    assert direct.returncode == 0, direct.stderr
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 1


def test_a_direct_connection_is_not_taken_for_a_pooler(db: Database) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        assert not lock.behind_pooler(conn)


def test_runner_lock_keeps_three_runners_apart_through_a_pooler(
    db: Database, pgbouncer: str
) -> None:
    """A session advisory lock let 3 of 3 runners in at once through this pooler (it
    stays on the pooled server connection, which the next runner is given)."""
    where = _target(db, _pooled(db, pgbouncer))
    entered = threading.Event()
    release = threading.Event()
    outcomes: list[str] = []

    def first() -> None:
        with lock.runner_lock(where, 5.0, "first runner"):
            entered.set()
            release.wait(60)

    holder = threading.Thread(target=first)
    holder.start()
    try:
        assert entered.wait(60)
        # Held in an idle transaction with no transaction id and no snapshot: it
        # holds back neither VACUUM nor CREATE INDEX CONCURRENTLY.
        held = db.execute(
            "SELECT state, backend_xid, backend_xmin FROM pg_stat_activity "
            "WHERE application_name = 'first runner (runner lock)'"
        )
        assert held == [("idle in transaction", None, None)]
        for name in ("second", "third"):
            try:
                with lock.runner_lock(where, 0.3, f"{name} runner"):
                    outcomes.append(f"{name} ran")
            except LockHeld as exc:
                assert "first runner (runner lock)" in exc.message
                outcomes.append(f"{name} refused")
        # The same through connections pgbouncer hands out meanwhile, in between.
        with psycopg.connect(_pooled(db, pgbouncer), autocommit=True) as other:
            for _ in range(8):
                other.execute("SELECT 1")
        with pytest.raises(LockHeld), lock.runner_lock(where, 0.3, "fourth runner"):
            pass
    finally:
        release.set()
        holder.join(60)
    assert outcomes == ["second refused", "third refused"]
    with lock.runner_lock(where, 5.0, "after the first"):
        outcomes.append("next ran")
    assert outcomes[-1] == "next ran"


@pytest.mark.slow
def test_nothing_the_engine_sets_leaks_to_other_clients_of_the_pool(
    db: Database, pgbouncer: str, tmp_path: Path
) -> None:
    url = _pooled(db, pgbouncer)
    where = _target(db, url)
    with psycopg.connect(url, autocommit=True) as conn:
        defaults = conn.execute(DEFAULTS).fetchone()
    assert defaults is not None
    folder = _at_000_with_pending(db, tmp_path)
    assert db.cli("db", "migrate", "--migrations-dir", str(folder), env={"DATABASE_URL": url})
    with lock.runner_lock(where, 5.0, "runner"), psycopg.connect(url, autocommit=True) as conn:
        for _ in range(3):
            with conn.transaction():
                lock.settings(conn, lock_timeout=0.05, statement_timeout=1.5)
                assert conn.execute("SHOW lock_timeout").fetchone() == ("50ms",)
    # Every server connection of the pool (4): each of 4 clients in a transaction
    # of its own holds a different one.
    clients = [psycopg.connect(url) for _ in range(4)]
    try:
        seen = [c.execute(DEFAULTS).fetchone() for c in clients]
    finally:
        for c in clients:
            c.close()
    assert len({row[-1] for row in seen if row}) == 4
    assert {row[:-1] for row in seen if row} == {defaults[:-1]}
