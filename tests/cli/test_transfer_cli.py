"""``aicrm leads|contacts import|export`` end to end: real processes, exit codes, files."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Database, Server, create_database, drop_database
from tests.migrate.test_failures import assert_one_line_error

GOOD = (
    "first_name,last_name,email,company_name,source,status,ai_score,attributes\n"
    'Ann,Lee,ann@x.io,"Acme, Inc.",web,qualified,0.5,"{""seats"": 3}"\n'
    "Bob,,bob@y.io,,fair,,,\n"
    ",,,Solo,web,new,,\n"
)


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def _file(db: Database, name: str, text: str | bytes) -> Path:
    path = db.workdir / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _nothing_written(db: Database) -> None:
    assert db.scalar("SELECT count(*) FROM leads") == 0
    assert db.scalar("SELECT count(*) FROM contacts") == 0
    assert db.scalar("SELECT count(*) FROM crm_history") == 0


@pytest.fixture
def other_db(server: Server, head_template: str, crm_db: Database) -> Iterator[Database]:
    """A second fresh CRM database, with the same environment but its URL."""
    name = create_database(server, template=head_template)
    url = server.conninfo(name)
    yield Database(name, url, server, crm_db.workdir, {**crm_db.env, "DATABASE_URL": url})
    drop_database(server, name)


@pytest.mark.slow
def test_import_leads(crm_db: Database) -> None:
    source = _file(crm_db, "leads.csv", GOOD)
    done = _json(
        crm_db.cli("leads", "import", str(source), "--json", env={"AICRM_ACTOR": "loader"})
    )
    assert done == {
        "table": "leads",
        "rows": 3,
        "imported": 3,
        "rejected": 0,
        "rejects_path": None,
        "errors": [],
    }
    assert crm_db.execute("SELECT email, attributes FROM leads ORDER BY email NULLS LAST") == [
        ("ann@x.io", {"seats": 3}),
        ("bob@y.io", {}),
        (None, {}),
    ]
    assert crm_db.scalar("SELECT count(*) FROM crm_history WHERE actor = 'loader'") == 3
    text = crm_db.cli("contacts", "import", str(_file(crm_db, "c.csv", "lead_id,email\n")))
    assert text.returncode == 0 and text.stdout.strip() == "imported 0 contacts"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("first_name,emial\nAnn,ann@x.io\n", "Unknown column 'emial'"),
        ("source,status\nweb,new\n", "has none of the columns"),
        (b"first_name,email\nJos\xe9,jose@x.io\n", "is not UTF-8 (line 2 has the byte 0xe9)"),
        ("first_name,email\nAnn,ann@x.io\nBob,bob@x.io,more\n", "line 3 has more fields"),
        ("", "is empty"),
        ("email\nann@x.io\nnot-an-email\n", "1 of the 2 rows of"),
        ("email\nann@x.io\nANN@x.io\n", "line 3: email ANN@x.io is also on line 2"),
    ],
    ids=["unknown column", "missing column", "encoding", "ragged", "empty", "invalid", "dup"],
)
@pytest.mark.slow
def test_bad_imports_exit_2_and_write_nothing(
    crm_db: Database, content: str | bytes, expected: str
) -> None:
    source = _file(crm_db, "bad.csv", content)
    line = assert_one_line_error(crm_db.cli("leads", "import", str(source)), 2)
    assert expected in line
    _nothing_written(crm_db)


@pytest.mark.slow
def test_missing_file_and_option_mistakes(crm_db: Database) -> None:
    source = _file(crm_db, "leads.csv", GOOD)
    line = assert_one_line_error(crm_db.cli("leads", "import", "nope.csv"), 2)
    assert "Cannot read nope.csv" in line
    line = assert_one_line_error(crm_db.cli("leads", "import", str(source), "--skip-invalid"), 2)
    assert "--skip-invalid needs --rejects FILE" in line
    line = assert_one_line_error(
        crm_db.cli("leads", "import", str(source), "--rejects", "r.csv"), 2
    )
    assert "--rejects goes with --skip-invalid" in line
    line = assert_one_line_error(crm_db.cli("leads", "export", "-", "--json"), 2)
    assert "--json" in line
    line = assert_one_line_error(crm_db.cli("leads", "export", "x.csv", "--status", "hot"), 2)
    assert "'hot' is not a lead status" in line
    _nothing_written(crm_db)


@pytest.mark.slow
def test_skip_invalid_writes_the_rejects(crm_db: Database) -> None:
    crm_db.cli("leads", "create", "--email", "old@x.io")
    source = _file(
        crm_db,
        "leads.csv",
        "first_name,email,status\n"
        "Ann,ann@x.io,new\n"  # 2
        "Bad,bad@,new\n"  # 3
        "Old,OLD@x.io,\n"  # 4
        "Hot,hot@x.io,hot\n"  # 5
        "Twin,Ann@X.io,\n",  # 6
    )
    rejects = crm_db.workdir / "rejects.csv"
    result = crm_db.cli("leads", "import", str(source), "--skip-invalid", "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"imported 1 lead; rejected 4 row(s), written to {rejects}"
    )
    assert "  line 3: email 'bad@' is not a valid email address" in result.stdout
    with rejects.open(newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["line", "reason", "first_name", "email", "status"]
    assert [row[0] for row in table[1:]] == ["3", "4", "5", "6"]
    assert table[2][1].startswith("email OLD@x.io already belongs to lead ")
    assert table[3][1].startswith("status 'hot' is not a lead status")
    assert table[4][1] == "email Ann@X.io is also on line 2"
    assert table[4][2:] == ["Twin", "Ann@X.io", ""]
    assert crm_db.scalar("SELECT count(*) FROM leads") == 2


@pytest.mark.slow
def test_allow_duplicates(crm_db: Database) -> None:
    crm_db.cli("leads", "create", "--email", "old@x.io")
    source = _file(crm_db, "leads.csv", "email\nold@x.io\nOld@x.io\n")
    assert_one_line_error(crm_db.cli("leads", "import", str(source)), 2)
    done = _json(crm_db.cli("leads", "import", str(source), "--allow-duplicates", "--json"))
    assert done["imported"] == 2


@pytest.mark.slow
def test_contacts_import_and_export(crm_db: Database) -> None:
    lead = _json(crm_db.cli("leads", "create", "--email", "lead@x.io", "--json"))
    client = _json(crm_db.cli("clients", "create", "--name", "Corp", "--json"))
    source = _file(
        crm_db,
        "contacts.csv",
        f"lead_id,client_id,first_name,email\n{lead['id']},,Pat,pat@x.io\n"
        f",{client['id']},Sam,sam@x.io\n",
    )
    assert _json(crm_db.cli("contacts", "import", str(source), "--json"))["imported"] == 2
    bad = _file(crm_db, "bad.csv", f"lead_id,email\n{client['id']},x@x.io\n")
    line = assert_one_line_error(crm_db.cli("contacts", "import", str(bad)), 2)
    assert f"line 2: no lead has id {client['id']}" in line
    out = crm_db.cli("contacts", "export", "-", "--client", str(client["id"]))
    assert out.returncode == 0, out.stderr
    table = list(csv.reader(io.StringIO(out.stdout)))
    assert [row[5] for row in table] == ["email", "sam@x.io"]
    out = crm_db.cli("contacts", "export", "-", "--search", "pat")
    assert [row[5] for row in csv.reader(io.StringIO(out.stdout))] == ["email", "pat@x.io"]


@pytest.mark.slow
def test_export_with_filters(crm_db: Database) -> None:
    crm_db.cli("leads", "create", "--email", "a@x.io", "--source", "web", "--attr", "plan=pro")
    crm_db.cli("leads", "create", "--email", "b@x.io", "--source", "fair", "--status", "lost")
    crm_db.cli("leads", "create", "--email", "c@x.io", "--source", "web")

    def emails(*args: str) -> list[str]:
        result = crm_db.cli("leads", "export", "-", *args)
        assert result.returncode == 0, result.stderr
        return [row[3] for row in csv.reader(io.StringIO(result.stdout))][1:]

    assert emails() == ["a@x.io", "b@x.io", "c@x.io"]
    assert emails("--source", "web") == ["a@x.io", "c@x.io"]
    assert emails("--status", "lost") == ["b@x.io"]
    assert emails("--attr", "plan=pro") == ["a@x.io"]
    assert emails("--search", "c@x") == ["c@x.io"]
    assert emails("--converted") == []
    assert emails("--created-from", "2999-01-01") == []
    target = crm_db.workdir / "web.csv"
    done = _json(crm_db.cli("leads", "export", str(target), "--source", "web", "--json"))
    assert done == {"table": "leads", "exported": 2, "path": str(target)}
    assert target.read_text(encoding="utf-8").count("\n") == 3
    text = crm_db.cli("leads", "export", str(target), "--open")
    assert text.stdout.strip() == f"exported 3 leads to {target}"


@pytest.mark.slow
def test_export_then_import_into_a_fresh_database(crm_db: Database, other_db: Database) -> None:
    crm_db.cli("leads", "create", "--first-name", "Zoë", "--email", "zoe@x.io", "--attr", "k=[1]")
    crm_db.cli("leads", "create", "--company", "Comma, Inc.", "--source", "web")
    target = crm_db.workdir / "all.csv"
    assert crm_db.cli("leads", "export", str(target)).returncode == 0
    done = _json(other_db.cli("leads", "import", str(target), "--json"))
    assert done["imported"] == 2
    query = "SELECT * FROM leads ORDER BY id"
    assert other_db.execute(query) == crm_db.execute(query)


@pytest.mark.slow
def test_progress_is_drawn_on_a_terminal_only(crm_db: Database) -> None:
    source = _file(crm_db, "leads.csv", GOOD)
    shown = crm_db.cli("leads", "import", str(source), env={"FORCE_COLOR": "1"})
    assert shown.returncode == 0, shown.stderr
    assert "imported 3 leads" in shown.stdout
    assert "database:" in shown.stderr  # the terminal path, progress bar included
    target = crm_db.workdir / "out.csv"
    shown = crm_db.cli("leads", "export", str(target), env={"FORCE_COLOR": "1"})
    assert shown.returncode == 0 and "exported 3 leads" in shown.stdout
    quiet = crm_db.cli("leads", "export", str(target))
    assert quiet.returncode == 0 and quiet.stderr == ""
