"""--pause-ratio: after each batch the online backfill pauses that many times as long as
the batch's transaction took (default 1: busy at most about half the time, so that on a
loaded server the application keeps its share of the CPU and of the WAL flushes);
0 runs it flat out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Database
from tests.migrations.legacy import Legacy

pytestmark = pytest.mark.slow


def _converted_leads(db: Database, count: int) -> None:
    legacy = Legacy(db)
    try:
        for _ in range(count):
            legacy.converted()
    finally:
        legacy.close()


def _online(db: Database, *args: str) -> dict[str, Any]:
    done = db.cli("db", "migrate", "--target", "001", "--online", "--json", *args)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _backfill_seconds(report: dict[str, Any]) -> float:
    return float(
        sum(s["seconds"] for s in report["steps"] if s["step"].startswith("phase backfill"))
    )


def test_the_backfill_pauses_after_its_batches_by_default(db: Database) -> None:
    _converted_leads(db, 1500)  # several batches of leads, clients and contacts
    report = _online(db)
    assert report["pause_ratio"] == 1.0
    # As long as its batches took: about half the backfill's time, never all of it.
    backfill = _backfill_seconds(report)
    assert 0.2 * backfill < report["pace_seconds"] < backfill
    assert db.scalar("SELECT count(*) FROM leads WHERE is_converted") == 1500


def test_pause_ratio_zero_runs_the_backfill_flat_out(db: Database) -> None:
    _converted_leads(db, 300)
    report = _online(db, "--pause-ratio", "0")
    assert report["pause_ratio"] == 0.0
    assert report["pace_seconds"] == 0.0
    assert db.scalar("SELECT count(*) FROM leads WHERE is_converted") == 300


def test_the_report_says_how_long_the_backfill_paused(db: Database) -> None:
    _converted_leads(db, 50)
    done = db.cli("db", "migrate", "--target", "001", "--online", "--pause-ratio", "2")
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("pace:"))
    assert line.startswith("pace: the backfill paused ")
    assert line.endswith("s in all after its batches (--pause-ratio 2)")


def test_a_negative_pause_ratio_is_refused(db: Database) -> None:
    done = db.cli("db", "migrate", "--online", "--pause-ratio", "-1")
    assert done.returncode == 2
    assert "--pause-ratio" in done.stderr
    assert "Traceback" not in done.stderr
