"""The online backfill throttles on replication lag (--max-replica-lag), on a real
streaming standby: with the standby's replay paused it waits between batches, says
so, and goes on once the standby has caught up; the run then ends where the
transactional 001 ends, and the report tells the longest lag and the time waited."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from aicrm import config
from aicrm.db import replication_lag, target
from aicrm.migrate import runner
from aicrm.migrate._report import Report
from aicrm.migrate.options import OnlineSettings, Options
from tests.conftest import Database, Server, clean_env, create_database, drop_database
from tests.migrations.legacy import build_every_anomaly
from tests.migrations.test_online_helpers import (
    aicrm,
    drop_twin,
    end_state,
    migrate,
    no_runner,
    twin,
)
from tests.migrations.test_online_resume import BULK
from tests.standby import Replicated, replicated  # noqa: F401 - a fixture
from tests.support import MIGRATIONS, wait_for

pytestmark = pytest.mark.slow

BOUND = 0.2  # seconds: --max-replica-lag
ONLINE_STATE = "SELECT rows_done, rows_total FROM aicrm_online_migration"
PROBE = "CREATE TABLE IF NOT EXISTS lag_probe (x int)"


@pytest.fixture
def legacy_db(replicated: Replicated, tmp_path: Path) -> Iterator[Database]:  # noqa: F811
    """A legacy database (with more rows than one batch) on the replicated primary."""
    server = Server(replicated.primary(), replicated.home)
    name = create_database(server, f"aicrm_lag_{uuid.uuid4().hex[:10]}")
    home = tmp_path / "home"
    home.mkdir()
    url = server.conninfo(name)
    env = clean_env(DATABASE_URL=url, AICRM_HOME=str(home), BACKUP_DIR=str(tmp_path / "backups"))
    db = Database(name, url, server, tmp_path, env)
    build_every_anomaly(db, blocking=False)
    db.execute(BULK)
    yield db
    drop_database(server, name)


def lag_beyond(replicated: Replicated, bound: float) -> None:  # noqa: F811
    """Write on the primary (replay is paused) until the primary sees its standby lag
    more than ``bound``: the first batch then finds the standby behind."""
    deadline = time.monotonic() + 60
    with psycopg.connect(replicated.primary(), autocommit=True) as conn:
        conn.execute(PROBE)
        while (lag := replication_lag(conn)) is None or lag <= bound:
            conn.execute("INSERT INTO lag_probe VALUES (1)")
            assert time.monotonic() < deadline, f"the primary saw a lag of {lag}"
            time.sleep(0.05)  # polling a condition under a deadline


def test_the_backfill_waits_for_a_paused_standby_then_completes(
    replicated: Replicated,  # noqa: F811
    legacy_db: Database,
    tmp_path: Path,
) -> None:
    reference = twin(legacy_db, "reference")
    try:
        migrate(reference, "--target", "001")
        replicated.wait_replayed()
        said: list[str] = []
        reports: list[Report] = []
        failures: list[BaseException] = []
        options = Options(
            target_version=1,
            backup_dir=tmp_path / "backups",
            progress=said.append,
            online=OnlineSettings(max_replica_lag=BOUND),
        )
        where = target(config.resolve(legacy_db.env))

        def run() -> None:
            try:
                reports.append(runner.migrate(options, where))
            except BaseException as exc:  # handed to the test's thread
                failures.append(exc)

        thread = threading.Thread(target=run, name="online migrate")
        replicated.replay(False)
        try:
            lag_beyond(replicated, BOUND)
            thread.start()
            wait_for(
                lambda: (
                    any(m.startswith("waiting for the replicas before") for m in said)
                    or not thread.is_alive()
                ),
                "the backfill to wait for the standby",
            )
            assert thread.is_alive(), (failures, said)
            # held between batches: the backfill is recorded as unfinished
            done, total = legacy_db.execute(ONLINE_STATE)[0]
            assert done is not None and total is not None and done < total
        finally:
            replicated.replay(True)
        thread.join(timeout=300)
        assert not thread.is_alive(), "the run did not finish after the standby caught up"
        assert not failures, failures
        report = reports[0]
        assert report.replica_lag_bound == BOUND
        assert report.replica_waits >= 1
        assert report.replica_wait_seconds > 0
        assert report.replica_lag_max is not None and report.replica_lag_max > BOUND
        assert report.replica_note is None  # a superuser sees the standby
        assert "replicas: bound 0.2 s, longest lag" in report.as_text()
        assert report.to_dict()["replica_wait_seconds"] == report.replica_wait_seconds
        assert any(m.startswith("waiting for the replicas: caught up") for m in said)
        assert end_state(legacy_db) == end_state(reference)
    finally:
        replicated.replay(True)
        drop_twin(reference)
    replicated.wait_replayed()


def test_a_login_without_pg_monitor_is_told_the_throttle_could_not_see(
    replicated: Replicated,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A non-superuser owner without pg_monitor: the run completes and its report says
    once that the throttle could not see the standby; following the advice (grant
    pg_monitor) makes the next run see it."""
    server = Server(replicated.primary(), replicated.home)
    owner = f"aicrm_owner_{uuid.uuid4().hex[:8]}"
    name = create_database(server, f"aicrm_lag_{uuid.uuid4().hex[:10]}")
    admin = psycopg.connect(replicated.primary(), autocommit=True)
    try:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
        with psycopg.connect(replicated.primary(name), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
        url = make_conninfo(server.conninfo(name), user=owner)
        home = tmp_path / "home"
        home.mkdir()
        env = clean_env(DATABASE_URL=url, AICRM_HOME=str(home), BACKUP_DIR=str(tmp_path / "b"))
        db = Database(name, url, server, tmp_path, env)
        db.execute((MIGRATIONS / "000_original_schema.sql").read_text())
        db.execute(BULK)
        again = twin(db, "again")  # the same legacy database, for the run after the grant
        args = ("--target", "001", "--online", "--max-replica-lag", "30", "--json")
        first = json.loads(migrate(db, *args).stdout)
        assert first["replica_lag_bound"] == 30
        assert first["replica_lag_max"] is None
        assert "could not see the progress of 1 standby(s)" in first["replica_note"]
        assert "GRANT pg_monitor TO" in first["replica_note"]
        admin.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(owner)))
        second = json.loads(migrate(again, *args).stdout)
        assert second["replica_note"] is None
        assert second["replica_lag_max"] is not None
        drop_twin(again)
    finally:
        with admin as conn:
            for dbname in (name, f"{name}_again"):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(dbname)
                    )
                )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))


def test_a_waiting_run_interrupted_resumes_as_its_message_says(
    replicated: Replicated,  # noqa: F811
    legacy_db: Database,
) -> None:
    """The waiting line's advice, followed: the CLI run waiting for the paused standby
    is interrupted (SIGINT), and 'aicrm db migrate --online --max-replica-lag …' (as
    the line says) resumes it to the end once the standby replays again."""
    reference = twin(legacy_db, "reference")
    try:
        migrate(reference, "--target", "001")
        replicated.wait_replayed()
        replicated.replay(False)
        lines: list[str] = []
        try:
            lag_beyond(replicated, BOUND)
            args = ("db", "migrate", "--target", "001", "--online", "--max-replica-lag", "0.2")
            proc = aicrm(legacy_db, *args)
            reader = threading.Thread(
                target=lambda: lines.extend(proc.stderr or []), name="stderr", daemon=True
            )
            reader.start()
            try:
                wait_for(
                    lambda: (
                        any("waiting for the replicas before" in m for m in lines)
                        or proc.poll() is not None
                    ),
                    "the CLI run to wait for the standby",
                )
                assert proc.poll() is None, lines
                proc.send_signal(signal.SIGINT)
                assert proc.wait(timeout=60) != 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            reader.join(timeout=60)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            assert not any("Traceback" in m for m in lines), "".join(lines)
            wait_for(lambda: no_runner(legacy_db), "the interrupted runner's backend to end")
            advice = next(m for m in lines if "waiting for the replicas before" in m)
            assert "'aicrm db migrate --online --max-replica-lag 0.2' resumes" in advice
            assert legacy_db.scalar("SELECT phase FROM aicrm_online_migration") is not None
        finally:
            replicated.replay(True)
        done = migrate(legacy_db, *args[2:], "--json")
        assert json.loads(done.stdout)["outcome"].startswith("applied online (resumed")
        assert end_state(legacy_db) == end_state(reference)
    finally:
        replicated.replay(True)
        drop_twin(reference)
    replicated.wait_replayed()
