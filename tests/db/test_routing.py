"""Read routing on a real streaming standby: replication works, reads go to the
replica while it is close enough, a lagging or stopped replica is skipped and the
log says so; the primary's view of the lag, for bulk writers."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from aicrm import config
from aicrm.db import (
    Router,
    Target,
    connect_read,
    replica_lag,
    replication_lag,
    target,
    wait_for_replicas,
)
from tests.standby import Replicated, replicated  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

IN_RECOVERY = "SELECT pg_is_in_recovery()"


@pytest.fixture
def where(replicated: Replicated, tmp_path: Path) -> Iterator[Target]:  # noqa: F811
    """A database on the replicated primary with a table, replayed on the standby."""
    name = f"aicrm_r_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(replicated.primary(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(replicated.primary(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
    replicated.wait_replayed()
    env = {
        "DATABASE_URL": replicated.primary(name),
        "AICRM_READ_URL": replicated.standby(name),
        "AICRM_READ_MAX_LAG": "0.5",
        "AICRM_HOME": str(tmp_path),
    }
    yield target(config.resolve(env))
    with psycopg.connect(replicated.primary(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def lag_beyond(replicated: Replicated, where: Target, bound: float) -> float:  # noqa: F811
    """Write on the primary (replay is paused) until the standby lags over ``bound``."""
    assert where.read is not None
    deadline = time.monotonic() + 60
    with (
        psycopg.connect(where.conninfo, autocommit=True) as primary,
        psycopg.connect(where.read.conninfo, autocommit=True) as standby,
    ):
        while True:
            primary.execute("INSERT INTO t VALUES (1)")
            lag = replica_lag(standby)
            if lag is not None and lag > bound:
                return lag
            assert time.monotonic() < deadline, f"the standby's lag stayed at {lag}"
            time.sleep(0.05)  # polling a condition under a deadline


def test_replication_works_and_reads_go_to_the_fresh_replica(
    replicated: Replicated,  # noqa: F811
    where: Target,
) -> None:
    with psycopg.connect(where.conninfo, autocommit=True) as primary:
        primary.execute("INSERT INTO t SELECT generate_series(1, 100)")
    replicated.wait_replayed()
    with connect_read(where) as conn:
        assert conn.execute(IN_RECOVERY).fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
        assert replica_lag(conn) == 0.0
    router = Router(where, check_every=0)
    try:
        assert router.use_replica()
    finally:
        router.close()
    with psycopg.connect(where.conninfo, autocommit=True) as primary:
        assert replication_lag(primary) == 0.0


def test_a_lagging_replica_is_skipped_and_the_log_says_so(
    replicated: Replicated,  # noqa: F811
    where: Target,
    caplog: pytest.LogCaptureFixture,
) -> None:
    replicated.replay(False)
    router = Router(where, check_every=0, retry_every=0)
    try:
        assert lag_beyond(replicated, where, 0.5) > 0.5
        with caplog.at_level(logging.WARNING, logger="aicrm.db._routing"):
            with connect_read(where) as conn:
                assert conn.execute(IN_RECOVERY).fetchone() == (False,)  # the primary
            assert not router.use_replica()
        warnings = [r.getMessage() for r in caplog.records if r.name == "aicrm.db._routing"]
        assert any(
            "reads go to the primary" in w and "AICRM_READ_MAX_LAG=0.5" in w for w in warnings
        )
        # the primary sees it too: the online backfill's throttle waits on this
        with psycopg.connect(where.conninfo, autocommit=True) as primary:
            deadline = time.monotonic() + 60
            while (lag := replication_lag(primary)) is None or lag <= 0.5:
                primary.execute("INSERT INTO t VALUES (2)")
                assert time.monotonic() < deadline, f"the primary saw a lag of {lag}"
                time.sleep(0.05)  # polling a condition under a deadline
            waited = wait_for_replicas(primary, 0.5, timeout=0.2)
            assert waited is not None and waited > 0.5
    finally:
        replicated.replay(True)
    replicated.wait_replayed()
    assert router.use_replica()  # caught up: back to the replica
    router.close()
    with psycopg.connect(where.conninfo, autocommit=True) as primary:
        assert wait_for_replicas(primary, 0.5, timeout=30) == 0.0


def test_a_stopped_replica_sends_reads_to_the_primary(
    replicated: Replicated,  # noqa: F811
    where: Target,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = Router(where, check_every=0, retry_every=0)
    assert router.use_replica()
    replicated.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="aicrm.db._routing"):
            with connect_read(where) as conn:
                assert conn.execute(IN_RECOVERY).fetchone() == (False,)
            assert not router.use_replica()
        warnings = [r.getMessage() for r in caplog.records if r.name == "aicrm.db._routing"]
        assert sum("cannot be reached" in w for w in warnings) == 2, warnings
        assert all("@" in w and "password" not in w for w in warnings)
    finally:
        replicated.start()
    assert router.use_replica(), router._verdict
    router.close()
