"""Custom statuses from a legacy database to head: carried through 002's fixed list
into 008's table, or mapped with --map-status; each refusal's advice, followed,
works; a refused run leaves no backup (docs/custom-statuses.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Database
from tests.migrations.legacy import Legacy, run_json

CUSTOM = {"nurturing": 3, "demo_scheduled": 2, "won": 1}


def custom_crm(db: Database) -> dict[str, list[str]]:
    """A legacy CRM with its own stages: open leads in nurturing, demo_scheduled and
    won, default ones, a user updated_at trigger, and a converted lead whose
    status was 'won'."""
    legacy = Legacy(db)
    ids: dict[str, list[str]] = {}
    try:
        for status, count in {**CUSTOM, "new": 2, "qualified": 1}.items():
            for _ in range(count):
                lead = legacy.lead()
                legacy.execute("UPDATE leads SET status = %s WHERE id = %s", (status, lead))
                ids.setdefault(status, []).append(lead)
        lead, _client = legacy.converted()
        legacy.execute("UPDATE leads SET status = 'won' WHERE id = %s", (lead,))
        ids["converted"] = [lead]
        legacy.execute(
            "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$"
        )
        legacy.execute(
            "CREATE TRIGGER stamp BEFORE UPDATE ON leads FOR EACH ROW EXECUTE FUNCTION stamp()"
        )
    finally:
        legacy.close()
    return ids


def statuses(db: Database) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in db.execute("SELECT id, status FROM leads")}


def backups(db: Database) -> list[Path]:
    folder = db.workdir / "backups"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_custom_statuses_carried_to_head(db: Database) -> None:
    ids = custom_crm(db)
    stamps = dict(db.execute("SELECT id, updated_at FROM leads"))
    result, report = run_json(db, "db", "migrate")
    assert result.returncode == 0, result.stderr
    found = {f["check"]: f for f in report["findings"]}
    assert found["unknown_lead_status"]["count"] == 6
    assert found["unknown_lead_status"]["severity"] == "resolvable"
    now = statuses(db)
    for status in (*CUSTOM, "new", "qualified"):
        assert {now[i] for i in ids[status]} == {status}
    assert now[ids["converted"][0]] == "converted"
    table = dict(db.execute("SELECT name, category FROM lead_statuses"))
    assert table == {
        "new": "open", "contacted": "open", "qualified": "open", "converted": "converted",
        "unqualified": "lost", "lost": "lost",
        "nurturing": "open", "demo_scheduled": "open", "won": "open",
    }  # fmt: skip
    order = [r[0] for r in db.execute("SELECT name FROM lead_statuses ORDER BY position")]
    assert order[:3] == ["new", "contacted", "qualified"]
    assert order[3:6] == ["demo_scheduled", "nurturing", "won"]  # custom: open, alphabetical
    assert order[6:] == ["converted", "unqualified", "lost"]
    # The carry is invisible: no history of a status change, no user trigger fired
    # on the carried leads, no temporary table left.
    carried = [i for s in CUSTOM for i in ids[s]]
    assert (
        db.scalar(
            "SELECT count(*) FROM crm_history WHERE operation = 'update' "
            "AND row_id = ANY(%s::uuid[])",
            (carried,),
        )
        == 0
    )
    after = dict(db.execute("SELECT id, updated_at FROM leads"))
    assert all(after[i] == stamps[i] for i in after if str(i) in carried)
    assert db.scalar("SELECT tgenabled FROM pg_trigger WHERE tgname = 'stamp'") == "O"
    # The table is enforced: an unknown status is refused, an added one accepted.
    verify = db.cli("db", "verify")
    assert verify.returncode == 0, verify.stdout


@pytest.mark.slow
def test_map_status_on_the_way(db: Database) -> None:
    ids = custom_crm(db)
    result, report = run_json(
        db,
        "db",
        "migrate",
        "--map-status",
        "nurturing=contacted",
        "--map-status",
        "won=Won Deal",
    )
    assert result.returncode == 0, result.stderr
    now = statuses(db)
    assert {now[i] for i in ids["nurturing"]} == {"contacted"}
    assert {now[i] for i in ids["won"]} == {"Won Deal"}
    assert {now[i] for i in ids["demo_scheduled"]} == {"demo_scheduled"}
    names = {r[0] for r in db.execute("SELECT name FROM lead_statuses")}
    assert "nurturing" not in names and "won" not in names
    assert {"Won Deal", "demo_scheduled"} <= names
    steps = [s["step"] for s in report["steps"]]
    assert any("nurturing -> contacted (3 leads)" in s for s in steps), steps


@pytest.mark.slow
def test_refused_before_008_advice_works(db: Database) -> None:
    ids = custom_crm(db)
    result, report = run_json(db, "db", "migrate", "--target", "005")
    assert result.returncode == 3, result.stderr
    assert "nurturing (3)" in result.stderr
    assert "--map-status nurturing=contacted" in result.stderr
    assert report["outcome"] == "refused"
    assert backups(db) == []  # a refused run leaves no backup
    assert db.scalar("SELECT to_regclass('aicrm_schema_migrations')") is None
    # The advice, followed: map each one.
    args = [a for s in CUSTOM for a in ("--map-status", f"{s}=contacted")]
    result, _ = run_json(db, "db", "migrate", "--target", "005", *args)
    assert result.returncode == 0, result.stderr
    assert {statuses(db)[i] for s in CUSTOM for i in ids[s]} == {"contacted"}


@pytest.mark.slow
def test_refused_before_008_other_advice_works(db: Database) -> None:
    custom_crm(db)
    result, _ = run_json(db, "db", "migrate", "--target", "003")
    assert result.returncode == 3
    assert "leave out --target" in result.stderr
    result, _ = run_json(db, "db", "migrate")  # the advice: leave out --target
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_bad_mappings_refused_with_advice(db: Database) -> None:
    custom_crm(db)
    cases = {
        "nurturin=contacted": "no open lead has the status 'nurturin'",
        "nurturing=converted": "'converted' is set only by converting",
        "nurturing": "needs OLD=NEW",
    }
    for item, message in cases.items():
        result = db.cli("db", "migrate", "--map-status", item)
        assert result.returncode == 2, (item, result.stderr)
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert backups(db) == []
    assert db.scalar("SELECT to_regclass('aicrm_schema_migrations')") is None
    # Followed: the right spelling works.
    result = db.cli("db", "migrate", "--map-status", "nurturing=contacted")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_map_status_at_head_points_to_the_command(db: Database) -> None:
    custom_crm(db)
    assert db.cli("db", "migrate").returncode == 0
    result = db.cli("db", "migrate", "--map-status", "nurturing=contacted")
    assert result.returncode == 2
    assert "aicrm statuses remove OLD --into NEW" in result.stderr
    followed = db.cli("statuses", "remove", "nurturing", "--into", "contacted")
    assert followed.returncode == 0, followed.stderr
    assert db.scalar("SELECT count(*) FROM leads WHERE status = 'nurturing'") == 0
    assert db.scalar("SELECT count(*) FROM lead_statuses WHERE name = 'nurturing'") == 0


@pytest.mark.slow
def test_downgrade_below_008_refused_until_custom_statuses_removed(db: Database) -> None:
    custom_crm(db)
    assert db.cli("db", "migrate").returncode == 0
    result = db.cli("db", "downgrade", "007")
    assert result.returncode == 1
    assert "aicrm statuses remove NAME --into OTHER" in result.stderr
    for status in CUSTOM:
        done = db.cli("statuses", "remove", status, "--into", "qualified")
        assert done.returncode == 0, done.stderr
    result = db.cli("db", "downgrade", "007")
    assert result.returncode == 0, result.stderr
    assert db.scalar("SELECT to_regclass('lead_statuses')") is None


@pytest.mark.slow
def test_open_lead_with_status_converted_refused_then_mapped(db: Database) -> None:
    legacy = Legacy(db)
    try:
        lead = legacy.lead()
        legacy.execute("UPDATE leads SET status = 'converted' WHERE id = %s", (lead,))
    finally:
        legacy.close()
    result, _ = run_json(db, "db", "migrate")
    assert result.returncode == 3
    assert "--map-status converted=qualified" in result.stderr
    assert backups(db) == []
    result, _ = run_json(db, "db", "migrate", "--map-status", "converted=qualified")
    assert result.returncode == 0, result.stderr
    assert statuses(db)[lead] == "qualified"


@pytest.mark.slow
def test_refusal_inside_the_transaction_leaves_no_backup(db: Database, tmp_path: Path) -> None:
    """A later migration's integrity check runs inside the transaction, after the
    backup was taken: its refusal deletes the backup too."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "000_base.sql").write_text("CREATE TABLE t (x int);\nINSERT INTO t VALUES (1);\n")
    (folder / "001_next.sql").write_text("ALTER TABLE t ADD COLUMN y int;\n")
    (folder / "001_next.checks.sql").write_text(
        "-- name: no_x\n-- kind: integrity\n-- severity: blocking\n"
        "-- description: rows of t\nSELECT x FROM t\n"
    )
    db.execute("CREATE TABLE keep_me (id int)")  # something for pg_dump to write
    db.execute("DROP TABLE keep_me")
    result = db.cli("db", "migrate", "--migrations-dir", str(folder))
    assert result.returncode == 3, result.stderr
    assert backups(db) == []
    assert db.scalar("SELECT to_regclass('t')") is None
