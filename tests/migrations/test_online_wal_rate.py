"""--max-wal-rate: the online backfill pauses between batches to keep its WAL under the
bound (the application's commits wait for the WAL written before them)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Database
from tests.migrations.legacy import Legacy

pytestmark = pytest.mark.slow


def test_the_backfill_pauses_under_a_wal_rate_bound(db: Database) -> None:
    legacy = Legacy(db)
    try:
        # 1,500 converted leads: the first backfill batch (500 rows) alone writes over
        # 100 kB of WAL, ten seconds' worth at 10 kB/s, far more than the run takes to
        # reach it on a busy machine
        for _ in range(1500):
            legacy.converted()
    finally:
        legacy.close()
    done = db.cli(
        "db",
        "migrate",
        "--target",
        "001",
        "--online",
        "--json",
        "--max-wal-rate",
        "0.01",  # 10 kB/s: any backfill batch of these rows goes over it
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["wal_wait_seconds"] > 0
    assert db.scalar("SELECT count(*) FROM leads WHERE is_converted") == 1500


def test_a_wal_rate_bound_needs_the_online_mode(db: Database) -> None:
    done = db.cli("db", "migrate", "--max-wal-rate", "5")
    assert done.returncode == 2
    assert "--online" in done.stderr
