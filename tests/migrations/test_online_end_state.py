"""The online 001 ends exactly where the transactional 001 ends, on the same data:
same schema (pg_dump and a catalog snapshot), same rows, same archive and legacy
values; and the ledger says 001 only after the switch."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REPO, Database
from tests.migrations.legacy import build_every_anomaly, legacy_references, rows_as_json
from tests.migrations.test_001_random import random_crm
from tests.migrations.test_online_helpers import (
    catalog,
    drop_twin,
    end_state,
    kill_at,
    migrate,
    twin,
)


def _compare(db: Database, *args: str) -> None:
    online = twin(db, "online")
    try:
        migrate(db, "--target", "001", *args)
        done = migrate(online, "--target", "001", "--online", *args)
        assert "applied online" in done.stdout
        assert catalog(online) == catalog(db)
        assert end_state(online) == end_state(db)
    finally:
        drop_twin(online)


@pytest.mark.slow
def test_every_anomaly_online_equals_transactional(db: Database) -> None:
    build_every_anomaly(db, blocking=False)
    _compare(db)


@pytest.mark.slow
def test_every_anomaly_with_orphans_archived(db: Database) -> None:
    build_every_anomaly(db, blocking=True)
    _compare(db, "--archive-orphans")


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.slow
def test_random_legacy_online_equals_transactional(db: Database, seed: int) -> None:
    random_crm(db, seed)
    _compare(db, "--archive-orphans")


@pytest.mark.slow
def test_online_then_downgrade_gives_back_every_row(db: Database) -> None:
    build_every_anomaly(db, blocking=True)
    references, rows = legacy_references(db), rows_as_json(db)
    migrate(db, "--target", "001", "--online", "--archive-orphans")
    down = db.cli("db", "downgrade", "000")
    assert down.returncode == 0, down.stderr
    assert legacy_references(db) == references
    assert rows_as_json(db) == rows


@pytest.mark.slow
def test_orphans_refused_without_the_flag(db: Database) -> None:
    build_every_anomaly(db, blocking=True)
    done = db.cli("db", "migrate", "--online", "--json")
    assert done.returncode == 3, done.stderr
    assert json.loads(done.stdout)["outcome"] == "refused"
    assert db.scalar("SELECT to_regclass('aicrm_online_migration')") is None


@pytest.mark.slow
def test_status_shows_the_phase_and_run_migration_sh_resumes(db: Database) -> None:
    build_every_anomaly(db, blocking=False)
    assert kill_at(db, "phase:backfill:clients", "--target", "001") == "backfill:clients"
    status = db.cli("db", "status")
    assert status.returncode == 0, status.stderr
    assert "phase backfill:clients" in status.stdout
    assert "'aicrm db migrate' resumes it" in status.stdout
    assert "version:  000" in status.stdout
    script = REPO / "migrations" / "run_migration.sh"
    done = subprocess.run(
        [str(script), "--online", "--target", "001"],
        env=db.env,
        cwd=db.workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "applied online (resumed from phase backfill:clients)" in done.stdout
    assert "online:" not in db.cli("db", "status").stdout
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 1
