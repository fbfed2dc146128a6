"""Every expected failure: its exit code, one line of reason, no traceback, no change."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from aicrm.db import tools
from tests.conftest import Database, clean_env, host_port_user, run_cli
from tests.support import copy_migrations


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert lines[0].startswith("error: ")
    return lines[0]


def test_unreachable_host_exits_2(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/crm", AICRM_HOME=str(tmp_path))
    line = assert_one_line_error(run_cli("db", "migrate", env=env, cwd=tmp_path), 2)
    assert "127.0.0.1:1/crm" in line and "refused" in line.lower()


def test_unknown_host_exits_2(tmp_path: Path) -> None:
    env = clean_env(DB_HOST="no-such-host.invalid", DB_NAME="crm", AICRM_HOME=str(tmp_path))
    line = assert_one_line_error(run_cli("db", "status", env=env, cwd=tmp_path), 2)
    assert "no-such-host.invalid" in line and "(DB_*)" in line


def test_invalid_database_url_exits_2_without_echoing_it(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL="host=x password=hunter2 = broken", AICRM_HOME=str(tmp_path))
    line = assert_one_line_error(run_cli("db", "status", env=env, cwd=tmp_path), 2)
    assert "DATABASE_URL is not a valid connection string" in line
    assert "hunter2" not in line


def test_wrong_password_exits_2_and_never_shows_the_password(embedded_db: Database) -> None:
    role, password = f"pw_{uuid.uuid4().hex[:8]}", "correct-horse-battery"
    hba = Path(embedded_db.scalar("SHOW hba_file"))
    original = hba.read_text()
    embedded_db.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
        .format(sql.Identifier(role), sql.Literal(password))
        .as_string()
    )
    try:
        hba.write_text(f"local all {role} scram-sha-256\n" + original)
        embedded_db.execute("SELECT pg_reload_conf()")
        host, port, _ = host_port_user(embedded_db.url)
        wrong = "Tr0ub4dor&3-wrong"
        env = {**embedded_db.env, "DATABASE_URL": ""}
        env.update(
            DB_HOST=host, DB_PORT=port, DB_USER=role, DB_NAME=embedded_db.name, DB_PASSWORD=wrong
        )
        result = embedded_db.cli("db", "migrate", env=env)
        line = assert_one_line_error(result, 2)
        assert "password authentication failed" in line
        assert wrong not in result.stdout + result.stderr

        env["DB_PASSWORD"] = password  # and the right one gets in
        ok = embedded_db.cli("db", "status", env=env)
        assert ok.returncode == 0, ok.stderr
        assert password not in ok.stdout + ok.stderr
    finally:
        hba.write_text(original)
        embedded_db.execute("SELECT pg_reload_conf()")
        with psycopg.connect(embedded_db.server.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.slow
def test_password_in_database_url_never_appears(db: Database, tmp_path: Path) -> None:
    secret = "s3cr3t-in-the-url"
    params = psycopg.conninfo.conninfo_to_dict(db.url)
    url = psycopg.conninfo.make_conninfo(
        db.url, password=secret, port="1" if "host" in params else None
    )
    env = {**db.env, "DATABASE_URL": url}
    failed = db.cli("db", "migrate", env=env)
    assert failed.returncode == 2
    assert secret not in failed.stdout + failed.stderr
    ok_env = {**db.env, "DATABASE_URL": psycopg.conninfo.make_conninfo(db.url, password=secret)}
    done = db.cli("db", "migrate", "--json", env=ok_env)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
    backups = list((tmp_path / "backups").iterdir())
    assert backups and all(secret not in p.name and secret not in p.read_text() for p in backups)


def test_missing_client_tool_exits_2(db: Database, tmp_path: Path) -> None:
    env = {"AICRM_PG_BIN": str(tmp_path / "no-tools-here")}
    line = assert_one_line_error(db.cli("db", "migrate", env=env), 2)
    assert "pg_dump was not found" in line
    assert db.scalar("SELECT to_regclass('leads') IS NULL") is True


def test_pg_dump_older_than_the_server_exits_2(db: Database) -> None:
    older = [
        Path(p).parent
        for p in glob.glob("/usr/lib/postgresql/*/bin/pg_dump")
        if int(Path(p).parts[-3]) < db.server.major
    ]
    if not older:
        pytest.skip(f"no pg_dump older than the server's {db.server.major} on this machine")
    line = assert_one_line_error(db.cli("db", "migrate", env={"AICRM_PG_BIN": str(older[0])}), 2)
    assert "pg_dump refuses to dump a newer server" in line
    assert db.scalar("SELECT to_regclass('leads') IS NULL") is True


def test_disk_too_small_for_the_backup_exits_2(db: Database, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a tiny file system")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tiny tmpfs here (needs root)")
    try:
        line = assert_one_line_error(db.cli("db", "migrate", env={"BACKUP_DIR": str(tiny)}), 2)
        assert "disk:" in line and "free" in line
        assert list(tiny.iterdir()) == []
    finally:
        subprocess.run(["umount", str(tiny)], check=False)
    assert db.scalar("SELECT to_regclass('leads') IS NULL") is True


@pytest.mark.slow
@pytest.mark.parametrize("can_read_ledger", [False, True])
def test_user_without_privilege_on_the_tables_exits_2(
    db: Database, tmp_path: Path, can_read_ledger: bool
) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    (folder / "001_alter.sql").write_text(
        "-- aicrm:lock leads\n-- step: alter\nALTER TABLE leads ADD COLUMN x int;\n"
    )
    role = f"ro_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)).as_string())
    if can_read_ledger:
        db.execute(
            sql.SQL("GRANT SELECT ON aicrm_schema_migrations TO {}")
            .format(sql.Identifier(role))
            .as_string()
        )
    try:
        url = psycopg.conninfo.make_conninfo(db.url, user=role)
        result = db.cli("db", "migrate", "--migrations-dir", str(folder), env={"DATABASE_URL": url})
        line = assert_one_line_error(result, 2)
        if can_read_ledger:
            assert "does not own leads" in line
        else:
            assert "permission denied for table aicrm_schema_migrations" in line
        assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0
    finally:
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_bad_flag_exits_2_with_one_line(db: Database) -> None:
    line = assert_one_line_error(db.cli("db", "migrate", "--no-such-flag"), 2)
    assert "--no-such-flag" in line


def test_failing_statement_rolls_back_and_exits_1(db: Database, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    (folder / "001_broken.sql").write_text(
        "-- step: a good change\nCREATE TABLE made_it (id int);\n"
        "-- step: a bad one\nSELECT 1 / 0;\n"
    )
    line = assert_one_line_error(db.cli("db", "migrate", "--migrations-dir", str(folder)), 1)
    assert "Step 'a bad one' failed: division by zero" in line
    assert "unchanged at version empty" in line
    assert db.scalar("SELECT to_regclass('leads') IS NULL") is True
    assert db.scalar("SELECT to_regclass('made_it') IS NULL") is True


def test_failed_verification_rolls_back_and_exits_1(db: Database, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    (folder / "001_unverified.sql").write_text("-- step: add\nCREATE TABLE half (id int);\n")
    (folder / "001_unverified.checks.sql").write_text(
        "-- name: never_true\n-- kind: verify\n-- description: an impossible promise\n"
        "SELECT 'the promise was broken'\n"
    )
    result = db.cli("db", "migrate", "--json", "--migrations-dir", str(folder))
    line = assert_one_line_error(result, 1)
    assert "Verification of 001_unverified failed" in line
    report = json.loads(result.stdout)
    assert report["outcome"] == "failed, rolled back" and report["exit_code"] == 1
    assert db.scalar("SELECT to_regclass('half') IS NULL") is True
    assert db.scalar("SELECT to_regclass('aicrm_schema_migrations') IS NULL") is True


def test_blocking_integrity_finding_exits_3_and_changes_nothing(
    db: Database, tmp_path: Path
) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    db.execute("INSERT INTO leads (email) VALUES ('no-at-sign'), ('fine@x.org')")
    (folder / "001_needs_emails.sql").write_text("-- step: add\nCREATE TABLE later (id int);\n")
    (folder / "001_needs_emails.checks.sql").write_text(
        "-- name: malformed_email\n-- kind: integrity\n-- severity: blocking\n"
        "-- description: leads whose email has no @\n"
        "SELECT id FROM leads WHERE email NOT LIKE '%@%'\n"
    )
    result = db.cli("db", "migrate", "--migrations-dir", str(folder))
    line = assert_one_line_error(result, 3)
    assert "malformed_email: 1" in line
    assert "samples:" in result.stdout and "list all: SELECT id FROM leads" in result.stdout
    assert db.scalar("SELECT to_regclass('later') IS NULL") is True
    # Only the backup of the run to 000: the refused run wrote none.
    assert len(list((tmp_path / "backups").iterdir())) == 1


def test_internal_errors_are_one_line_too(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "not-a-folder.txt"
    folder.write_text("")
    result = db.cli("db", "migrate", "--migrations-dir", str(folder))
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_flag_shows_the_traceback(db: Database) -> None:
    result = db.cli("db", "migrate", "--target", "999", env={"AICRM_DEBUG": "1"})
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_tools_report_their_versions() -> None:
    pg_dump = tools.find("pg_dump")
    assert pg_dump.major >= 15 and pg_dump.path.is_file()
