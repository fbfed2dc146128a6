"""``aicrm demo`` end to end: a real process on its own embedded PostgreSQL (no
DATABASE_URL), the seed's story checked line by line and against the database."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from aicrm.db import embedded
from tests.conftest import clean_env, run_cli
from tests.migrate.test_failures import assert_one_line_error

HEADINGS = (
    "1  The original CRM",
    "2  pg_dump --data-only, before",
    "3  Migration 001, dry run",
    "4  Migration 001",
    "5  The seed's example queries",
    "6  pg_dump --data-only, after",
    "7  The CRM core",
    "8  Reports",
)
WARNING = "circular foreign-key constraints"

LEGACY_LEADS = """
SELECT count(*) FILTER (WHERE is_converted), count(*) FILTER (WHERE NOT is_converted)
FROM leads AS l WHERE NOT EXISTS (SELECT 1 FROM sample_truth AS t WHERE t.lead_id = l.id)
"""


@pytest.fixture
def home() -> Iterator[Path]:
    """AICRM_HOME of the demo's own embedded server, stopped and removed at the end.

    Not under pytest's tmp_path: pytest resets its base folder to mode 0700 whenever
    another session starts, and the server's own user (pgserver, when tests run as
    root) could then no longer reach its data folder to stop it."""
    folder = Path(tempfile.mkdtemp(prefix="aicrm-demo-"))
    try:
        yield folder
    finally:
        embedded.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def section(text: str, number: int) -> str:
    start = text.index(HEADINGS[number - 1])
    end = text.index(HEADINGS[number]) if number < len(HEADINGS) else len(text)
    return text[start:end]


def number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in:\n{text}"
    return int(found.group(1).replace(",", ""))


@pytest.mark.slow
def test_demo_tells_the_seeds_story(home: Path, tmp_path: Path) -> None:
    env = clean_env(AICRM_HOME=str(home), BACKUP_DIR=str(tmp_path / "backups"), COLUMNS="120")
    result = run_cli("demo", env=env, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    out = result.stdout
    positions = [out.index(heading) for heading in HEADINGS]
    assert positions == sorted(positions)
    assert "(embedded)" in section(out, 1)

    # The warning before 001, none after.
    assert WARNING in section(out, 2)
    assert WARNING not in section(out, 6) and "no warnings" in section(out, 6)
    # The dry run reports anomalies and the dropped circular keys; nothing kept.
    dry = section(out, 3)
    assert "[resolvable]" in dry and "0 blocking;" in dry
    assert "leads.leads_client_id_fkey" in dry and "nothing was kept" in dry
    applied = section(out, 4)
    assert "applied: 000 -> 001" in applied and "locks held" in applied
    backups = list((tmp_path / "backups").glob("backup_before_migration_*.sql"))
    assert backups and str(backups[0].parent) in applied

    # The example queries' numbers add up to the legacy leads, and match the database.
    legacy = number(r"legacy data: ([\d,]+) leads", section(out, 1))
    queries = section(out, 5)
    converted = number(r"-> ([\d,]+) converted leads", queries)
    active = number(r"-> ([\d,]+) active leads", queries)
    assert converted + active == legacy == 5_000
    assert "SELECT * FROM lead_conversion_summary;" in queries
    assert "SELECT * FROM client_lead_history WHERE client_id = '" in queries

    crm = section(out, 7)
    # The legacy statuses are kept as custom statuses, and said so (statuses as data).
    assert "the legacy statuses stay, as custom statuses" in out
    assert "generated 20,000 more leads" in crm
    assert crm.count("convert_lead: ") == 3 and "convert_leads(" in crm
    reports = section(out, 8)
    assert "aicrm report conversions" in reports and "aicrm report funnel" in reports
    assert re.search(r"new\s+│\s+25,000", reports)

    info = embedded.conninfo(home, dbname="aicrm_demo")
    with psycopg.connect(info) as conn:
        row = conn.execute(LEGACY_LEADS).fetchone()
    assert row == (converted, active)

    # A database of that name the demo did not make is never dropped.
    with psycopg.connect(embedded.conninfo(home), autocommit=True) as conn:
        conn.execute("COMMENT ON DATABASE aicrm_demo IS NULL")
    again = run_cli("demo", env=env, cwd=tmp_path, timeout=240)
    assert "was not made by the demo" in assert_one_line_error(again, 2)
    with psycopg.connect(info) as conn:
        assert conn.execute(LEGACY_LEADS).fetchone() == (converted, active)
