"""`aicrm users`, `aicrm activities`, `aicrm leads assign` and `--owner` end to end:
real processes, exit codes, one-line errors (issue #17)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Database
from tests.migrate.test_failures import assert_one_line_error

ODD = "Zoë «<b>&amp;</b>» 'quote\" \\ ;DROP TABLE leads;-- 🙂 \x1b[31mred"


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_users_add_list_and_keys_of_users(crm_db: Database) -> None:
    ada = _json(crm_db.cli("users", "add", "ada@example.org", "--name", ODD, "--json"))
    assert ada["name"] == ODD and ada["active"] is True
    assert_one_line_error(crm_db.cli("users", "add", "ADA@example.org", "--name", "x"), 5)
    shown = crm_db.cli("users", "list")  # piped: tab-separated, control characters escaped
    assert (
        shown.returncode == 0 and "\x1b" not in shown.stdout and "ada@example.org" in shown.stdout
    )
    key = crm_db.cli("apikey", "create", "ada-key", "--user", "ada@example.org", "--json")
    assert _json(key)["name"] == "ada-key"
    assert crm_db.scalar("SELECT u.email FROM api_keys k JOIN users u ON u.id = k.user_id") == (
        "ada@example.org"
    )


@pytest.mark.slow
def test_owner_rules_and_reassignment(crm_db: Database) -> None:
    ada = _json(crm_db.cli("users", "add", "ada@example.org", "--name", "Ada", "--json"))
    grace = _json(crm_db.cli("users", "add", "grace@example.org", "--name", "Grace", "--json"))
    rule = _json(
        crm_db.cli("users", "rule", "set", "grace@example.org", "--source", "web", "--json")
    )
    assert rule["source"] == "web" and rule["user_ids"] == [grace["id"]]
    by_rule = _json(
        crm_db.cli("leads", "create", "--email", "w@x.org", "--source", "web", "--json")
    )
    assert by_rule["owner_id"] == grace["id"]
    explicit = _json(
        crm_db.cli("leads", "create", "--email", "e@x.org", "--owner", "ada@example.org", "--json")
    )
    assert explicit["owner_id"] == ada["id"]
    mine = _json(crm_db.cli("leads", "list", "--owner", "ada@example.org", "--json"))
    assert [lead["id"] for lead in mine["items"]] == [explicit["id"]]
    moved = _json(
        crm_db.cli("leads", "assign", explicit["id"], "grace@example.org", "--json",
                   env={"AICRM_ACTOR": "manager"})
    )  # fmt: skip
    assert moved["owner_id"] == grace["id"]
    history = _json(crm_db.cli("leads", "history", explicit["id"], "--json"))
    assert history[-1]["changes"] == {"owner_id": [ada["id"], grace["id"]]}
    assert history[-1]["actor"] == "manager"
    unknown = crm_db.cli("leads", "assign", explicit["id"], "nobody@example.org")
    assert "No user" in assert_one_line_error(unknown, 2)
    gone = _json(crm_db.cli("users", "deactivate", "grace@example.org", "--json"))
    assert gone["active"] is False
    refused = crm_db.cli("leads", "assign", explicit["id"], "grace@example.org")
    assert refused.returncode == 2 and "deactivated" in refused.stderr
    # grace is the rule's only user and is inactive: nobody now
    nobody = _json(crm_db.cli("leads", "create", "--email", "n@x.org", "--source", "web", "--json"))
    assert nobody["owner_id"] is None
    listed = crm_db.cli("users", "rule", "list")
    assert "source web: grace@example.org" in listed.stdout
    assert crm_db.cli("users", "rule", "remove", "--source", "web").returncode == 0
    assert crm_db.cli("users", "rule", "remove", "--source", "web").returncode == 4


@pytest.mark.slow
def test_activities_add_list_done_and_tasks(crm_db: Database) -> None:
    _json(crm_db.cli("users", "add", "ada@example.org", "--name", "Ada", "--json"))
    lead = _json(crm_db.cli("leads", "create", "--email", "l@x.org", "--company", "Acme", "--json"))
    call = _json(
        crm_db.cli(
            "activities", "add", "--lead", lead["id"], "--kind", "call", "--subject", ODD,
            "--body", ODD, "--attr", "minutes=12", "--json", env={"AICRM_ACTOR": "agent-7"},
        )
    )  # fmt: skip
    assert (call["subject"], call["body"], call["author"]) == (ODD, ODD, "agent-7")
    assert call["attributes"] == {"minutes": 12}
    task = _json(
        crm_db.cli(
            "activities", "add", "--lead", lead["id"], "--kind", "task",
            "--subject", "Send pricing",
            "--due", "2030-01-15", "--assignee", "ada@example.org", "--json",
        )
    )  # fmt: skip
    assert task["due_at"].startswith("2030-01-15")
    listed = _json(crm_db.cli("activities", "list", "--lead", lead["id"], "--json"))
    assert {a["id"] for a in listed["items"]} == {call["id"], task["id"]}
    table = crm_db.cli("activities", "list", "--lead", lead["id"])
    assert table.returncode == 0 and "\x1b" not in table.stdout
    tasks = _json(crm_db.cli("activities", "tasks", "--user", "ada@example.org", "--json"))
    assert [t["id"] for t in tasks["items"]] == [task["id"]]
    done = _json(crm_db.cli("activities", "done", task["id"], "--json"))
    assert done["done_at"] is not None
    assert (
        _json(crm_db.cli("activities", "tasks", "--user", "ada@example.org", "--json"))["items"]
        == []
    )


@pytest.mark.slow
def test_activity_errors_and_conversion(crm_db: Database) -> None:
    lead = _json(crm_db.cli("leads", "create", "--email", "l@x.org", "--json"))
    call = _json(
        crm_db.cli("activities", "add", "--lead", lead["id"], "--kind", "call", "--subject", "c",
                   "--json")
    )  # fmt: skip
    for args, code in (
        (("activities", "done", call["id"]), 2),  # not a task
        (("activities", "add", "--kind", "note", "--subject", "x"), 2),  # no record
        (("activities", "add", "--kind", "fax", "--subject", "x", "--lead", lead["id"]), 2),
        (("activities", "add", "--kind", "note", "--subject", "x", "--client", lead["id"]), 4),
        (("activities", "done", "00000000-0000-0000-0000-000000000001"), 4),
    ):
        assert_one_line_error(crm_db.cli(*args), code)
    converted = _json(crm_db.cli("leads", "convert", lead["id"], "--json"))
    moved = _json(crm_db.cli("activities", "list", "--client", converted["client_id"], "--json"))
    assert [a["id"] for a in moved["items"]] == [call["id"]]
