"""The online run's pre-flight leaves the application its cores: the integrity checks
run on one connection, and pg_dump only after them (the transactional mode runs its
checks on two connections beside pg_dump)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aicrm.migrate import OnlineSettings, Options, _checks as checks, migrate
from tests.conftest import Database
from tests.migrations.legacy import Legacy

pytestmark = pytest.mark.slow


def test_online_checks_run_on_one_connection_before_the_backup(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = Legacy(db)
    try:
        for _ in range(20):
            legacy.converted()
    finally:
        legacy.close()
    backups = tmp_path / "backups"
    used: list[tuple[int, list[str]]] = []
    real = checks.integrity

    def integrity(*args: Any, **kwargs: Any) -> Any:
        # how many connections, and what pg_dump has written by the time they run
        written = sorted(p.name for p in backups.iterdir()) if backups.exists() else []
        used.append((kwargs["connections"], written))
        return real(*args, **kwargs)

    monkeypatch.setattr(checks, "integrity", integrity)
    options = Options(target_version=1, backup_dir=backups, online=OnlineSettings())
    assert options.check_connections == 2  # the transactional default, left as it is
    report = migrate(options, where=db.target())
    assert used == [(1, [])]  # one connection, and no backup begun yet
    assert report.outcome == "applied online" and report.backup is not None
    assert db.scalar("SELECT count(*) FROM leads WHERE is_converted") == 20
