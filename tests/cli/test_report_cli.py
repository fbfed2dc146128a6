"""``aicrm report …`` and ``aicrm sample generate`` as real processes: JSON, TSV when
piped, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.conftest import Database
from tests.crm.test_reports import ACME, L1, L6, small_crm
from tests.migrate.test_failures import assert_one_line_error

# The aicrm command, with the report and sample apps added when the command does not
# register them itself (yet): the same error handling and exit codes as `aicrm`.
BOOT = """
import sys
from aicrm.cli import main, _report as report
names = {group.name for group in main.app.registered_groups}
if "report" not in names:
    main.app.add_typer(report.app, name="report")
if "sample" not in names:
    main.app.add_typer(report.sample_app, name="sample")
sys.exit(main.run(sys.argv[1:]))
"""


def aicrm(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BOOT, *args],
        env=db.env,
        cwd=db.workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def small(crm_db: Database) -> Database:
    small_crm(crm_db)
    return crm_db


@pytest.mark.slow
def test_conversions_as_json_and_tab_separated(small: Database) -> None:
    rows = ok_json(aicrm(small, "report", "conversions", "--json"))
    assert [(r["source"], r["total_leads"], r["converted_leads"]) for r in rows] == [
        ("web", 3, 2),
        ("referral", 2, 1),
        ("unknown", 1, 0),
    ]
    piped = aicrm(small, "report", "conversions")
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[0].split("\t") == [
        "source", "total_leads", "converted_leads", "active_leads", "conversion_rate",
        "avg_days_to_convert",
    ]  # fmt: skip
    assert lines[2].split("\t") == ["referral", "2", "1", "1", "0.5", "20.0"]
    assert lines[3].split("\t")[-1] == ""  # no conversion, no average


@pytest.mark.slow
def test_client_history_and_its_errors(small: Database) -> None:
    rows = ok_json(aicrm(small, "report", "client-history", str(ACME), "--json"))
    assert [r["lead_id"] for r in rows] == [str(L6), str(L1)]
    assert rows[0]["client_name"] == "Acme" and rows[0]["days_to_convert"] == pytest.approx(3)
    piped = aicrm(small, "report", "client-history", str(ACME))
    assert piped.stdout.splitlines()[1].startswith(str(L6) + "\tl6@a.io\tweb\t2024-01-05")
    line = assert_one_line_error(
        aicrm(small, "report", "client-history", str(uuid.UUID(int=999))), 4
    )
    assert "No client has id" in line
    line = assert_one_line_error(aicrm(small, "report", "client-history", "acme"), 2)
    assert "not a valid client id" in line


@pytest.mark.slow
def test_funnel(small: Database) -> None:
    rows = ok_json(aicrm(small, "report", "funnel", "--json"))
    assert [(r["status"], r["reached"], r["current"]) for r in rows] == [
        ("new", 6, 1), ("contacted", 5, 0), ("qualified", 4, 1), ("converted", 3, 3),
        ("unqualified", 0, 0), ("lost", 1, 1),
    ]  # fmt: skip
    assert rows[2]["median_days"] == pytest.approx(5.0)
    assert rows[1]["drop_off"] == pytest.approx(1 / 6)


@pytest.mark.slow
def test_reports_need_the_views(db: Database) -> None:
    # One check for every command (issue #15 item 8): never migrated, so migrate first.
    line = assert_one_line_error(aicrm(db, "report", "conversions"), 2)
    assert "never migrated" in line and "aicrm db migrate" in line
    line = assert_one_line_error(aicrm(db, "report", "funnel"), 2)
    assert "aicrm db migrate" in line


@pytest.mark.slow
def test_sample_generate_refuses_a_crm_with_data_unless_forced(crm_db: Database) -> None:
    made = ok_json(
        aicrm(crm_db, "sample", "generate", "--leads", "400", "--seed", "3", "--now",
              "2025-06-01", "--json")
    )  # fmt: skip
    assert made["leads"] == 400 and made["seed"] == 3
    assert made["now"] == "2025-06-01T00:00:00+00:00"
    assert crm_db.scalar("SELECT count(*) FROM sample_truth") == 400
    line = assert_one_line_error(aicrm(crm_db, "sample", "generate", "--leads", "10"), 2)
    assert "--force" in line
    again = aicrm(crm_db, "sample", "generate", "--leads", "100", "--seed", "4", "--force")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("generated 100 leads (seed 4")
    assert "sample_truth" in again.stdout
    assert crm_db.scalar("SELECT count(*) FROM leads") == 500
    same_seed = aicrm(crm_db, "sample", "generate", "--leads", "10", "--seed", "4", "--force")
    assert "seed 4 are in the database already" in assert_one_line_error(same_seed, 2)


@pytest.mark.slow
def test_sample_generate_needs_the_newest_schema(db: Database) -> None:
    line = assert_one_line_error(aicrm(db, "sample", "generate", "--leads", "10"), 2)
    assert "aicrm db migrate" in line
    bad = aicrm(db, "sample", "generate", "--leads", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
