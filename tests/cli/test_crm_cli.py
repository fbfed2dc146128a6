"""The CRM commands end to end: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import Database
from tests.migrate.test_failures import assert_one_line_error


def _json(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_create_show_update_list_and_history(crm_db: Database) -> None:
    made = _json(
        crm_db.cli(
            "leads",
            "create",
            "--first-name",
            "Lin",
            "--email",
            "lin@corp.io",
            "--company",
            "Corp",
            "--source",
            "web",
            "--attr",
            "seats=40",
            "--attr",
            "plan=pro",
            "--json",
            env={"AICRM_ACTOR": "cli-user"},
        )
    )
    assert made["attributes"] == {"seats": 40, "plan": "pro"}
    shown = _json(crm_db.cli("leads", "show", made["id"], "--json"))
    assert shown["email"] == "lin@corp.io"
    changed = _json(
        crm_db.cli(
            "leads",
            "update",
            made["id"],
            "--status",
            "qualified",
            "--attr",
            "plan=enterprise",
            "--json",
        )
    )
    assert changed["status"] == "qualified" and changed["attributes"]["plan"] == "enterprise"
    listed = _json(
        crm_db.cli(
            "leads",
            "list",
            "--status",
            "qualified",
            "--attr",
            "seats=40",
            "--search",
            "corp",
            "--json",
        )
    )
    assert [item["id"] for item in listed["items"]] == [made["id"]]
    timeline = _json(crm_db.cli("leads", "history", made["id"], "--json"))
    assert [e["operation"] for e in timeline] == ["insert", "update"]
    assert timeline[0]["actor"] == "cli-user"
    text = crm_db.cli("leads", "history", made["id"])
    assert 'status: "new" -> "qualified"' in text.stdout
    before = _json(
        crm_db.cli("leads", "show", made["id"], "--as-of", timeline[0]["changed_at"], "--json")
    )
    assert before["status"] == "new"
    table = crm_db.cli("leads", "list")
    assert table.stdout.splitlines()[0].startswith("id\tfirst_name")
    assert "lin@corp.io" in table.stdout and table.stderr == ""


@pytest.mark.slow
def test_convert_and_its_errors(crm_db: Database) -> None:
    lead = _json(crm_db.cli("leads", "create", "--email", "conv@x.org", "--company", "X", "--json"))
    done = _json(crm_db.cli("leads", "convert", lead["id"], "--json"))
    assert done["created_client"] is True
    client = _json(crm_db.cli("clients", "show", done["client_id"], "--json"))
    assert client["name"] == "X"
    again = crm_db.cli("leads", "convert", lead["id"])
    assert again.returncode == 0 and "already converted" in again.stdout
    other = _json(crm_db.cli("clients", "create", "--name", "Other", "--json"))
    line = assert_one_line_error(
        crm_db.cli("leads", "convert", lead["id"], "--into", other["id"]), 5
    )
    assert "permanent" in line
    line = assert_one_line_error(crm_db.cli("leads", "update", lead["id"], "--source", "x"), 5)
    assert "read-only" in line
    line = assert_one_line_error(crm_db.cli("leads", "delete", lead["id"]), 5)
    assert "cannot be deleted" in line


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("leads", "show", "not-a-uuid"), 2, "not a valid lead id"),
        (("leads", "show", str(uuid.UUID(int=7))), 4, "No lead has id"),
        (("leads", "convert", str(uuid.UUID(int=7))), 4, "No lead has id"),
        (("leads", "create", "--email", "nope"), 2, "not a valid email"),
        (("leads", "create", "--status", "won"), 2, "not a lead status"),
        (("leads", "list", "--created-from", "yesterday"), 2, "ISO 8601"),
        (("leads", "list", "--cursor", "xyz"), 2, "cursor"),
        (("leads", "create", "--attr", "novalue"), 2, "KEY=VALUE"),
        (("leads", "update", str(uuid.UUID(int=7))), 2, "Nothing to change"),
        (("clients", "show", str(uuid.UUID(int=9))), 4, "No client has id"),
        (("contacts", "create", "--email", "a@b.co"), 2, "exactly one"),
        (("leads", "merge", str(uuid.UUID(int=1))), 2, "Missing argument"),
    ],
)
def test_bad_input_gets_one_line_and_its_exit_code(
    crm_db: Database, args: tuple[str, ...], code: int, words: str
) -> None:
    line = assert_one_line_error(crm_db.cli(*args), code)
    assert words in line
    assert crm_db.scalar("SELECT count(*) FROM leads") == 0


@pytest.mark.slow
def test_duplicates_merge_and_bulk_conversion(crm_db: Database) -> None:
    first = _json(crm_db.cli("leads", "create", "--email", "d@x.org", "--json"))
    line = assert_one_line_error(crm_db.cli("leads", "create", "--email", "D@X.org"), 5)
    assert first["id"] in line
    second = _json(
        crm_db.cli(
            "leads",
            "create",
            "--email",
            "D@X.org",
            "--first-name",
            "Dee",
            "--allow-duplicate",
            "--json",
        )
    )
    merged = _json(crm_db.cli("leads", "merge", first["id"], second["id"], "--json"))
    assert merged["kept"]["first_name"] == "Dee" and merged["merged"] == [second["id"]]
    for i in range(3):
        crm_db.cli("leads", "create", "--email", f"bulk{i}@x.org", "--source", "fair")
    bulk = _json(crm_db.cli("leads", "convert-many", "--source", "fair", "--json"))
    assert bulk["converted"] == 3
    ids = crm_db.cli("leads", "convert-many", first["id"], str(uuid.UUID(int=3)))
    assert_one_line_error(ids, 4)
    assert (
        crm_db.scalar("SELECT count(*) FROM leads WHERE id = %s AND is_converted", (first["id"],))
        == 0
    )
    per_row = _json(
        crm_db.cli(
            "leads", "convert-many", first["id"], str(uuid.UUID(int=3)), "--per-row", "--json"
        )
    )
    assert per_row["converted"] == 1 and per_row["not_found"] == [str(uuid.UUID(int=3))]


@pytest.mark.slow
def test_contacts_commands(crm_db: Database) -> None:
    lead = _json(crm_db.cli("leads", "create", "--email", "p@co.io", "--json"))
    contact = _json(
        crm_db.cli(
            "contacts",
            "create",
            "--lead",
            lead["id"],
            "--email",
            "assistant@co.io",
            "--title",
            "EA",
            "--json",
        )
    )
    listed = _json(crm_db.cli("contacts", "list", "--lead", lead["id"], "--json"))
    assert [c["id"] for c in listed["items"]] == [contact["id"]]
    client = _json(crm_db.cli("clients", "create", "--name", "Co", "--json"))
    moved = _json(
        crm_db.cli("contacts", "update", contact["id"], "--client", client["id"], "--json")
    )
    assert moved["client_id"] == client["id"] and moved["lead_id"] is None
