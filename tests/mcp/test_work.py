"""The salesperson's MCP tools (``aicrm.mcp._tools_work``) over stdio, with the SDK's client."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.client.client import Client

from aicrm import apikeys
from aicrm.crm import session, users
from tests.conftest import Database
from tests.mcp.test_server import data, run_client, seeded, text

pytestmark = pytest.mark.slow


def test_update_lead_changes_fields_and_status_and_refuses_stale_writes(
    crm_db: Database,
) -> None:
    crm = seeded(crm_db)
    hopper, hamilton = crm.leads["Hopper"], crm.leads["Hamilton"]
    converted = str(crm_db.scalar("SELECT id FROM leads WHERE is_converted LIMIT 1"))

    async def session(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert "update_lead" in tools and "expected_updated_at" in str(
            tools["update_lead"].input_schema
        )
        read = data(await client.call_tool("get_lead", {"lead_id": str(hopper.id)}))["lead"]
        odd = "Ünïcode ‮ \t tab <b>&amp;</b> 'quotes' \"too\""
        changed = data(await client.call_tool("update_lead", {
            "lead_id": str(hopper.id), "status": "contacted", "company_name": odd,
            "clear": ["source"], "expected_updated_at": read["updated_at"],
        }))  # fmt: skip
        assert changed["status"] == "contacted" and changed["company_name"] == odd
        assert changed["source"] is None and changed["updated_at"] != read["updated_at"]

        stale = await client.call_tool("update_lead", {
            "lead_id": str(hopper.id), "status": "qualified",
            "expected_updated_at": read["updated_at"],
        })  # fmt: skip
        assert stale.is_error and "changed since you read it" in text(stale)

        cases: list[tuple[dict[str, Any], str]] = [
            ({"lead_id": converted, "status": "lost"}, "read-only"),
            ({"lead_id": str(hopper.id), "status": "dreaming"}, "dreaming"),
            ({"lead_id": str(hopper.id)}, "Nothing to change"),
            ({"lead_id": str(hopper.id), "source": "x", "clear": ["source"]}, "pick one"),
            ({"lead_id": str(hopper.id), "email": str(hamilton.email)}, "already belongs to"),
            ({"lead_id": str(hopper.id), "status": "lost", "expected_updated_at": "yesterday"},
             "is not a time"),
        ]  # fmt: skip
        for arguments, message in cases:
            failed = await client.call_tool("update_lead", arguments)
            assert failed.is_error and message in text(failed), (arguments, text(failed))
            assert "\n" not in text(failed) and "Traceback" not in text(failed)

    run_client(crm_db, crm.write_token, session)
    row = crm_db.execute("SELECT status, source FROM leads WHERE id = %s", (hopper.id,))
    assert row == [("contacted", None)]
    actors = crm_db.execute(
        "SELECT DISTINCT actor FROM crm_history WHERE row_id = %s AND operation = 'update'",
        (hopper.id,),
    )
    assert actors == [("maria.sales",)]


def test_a_read_key_cannot_update_a_lead(crm_db: Database) -> None:
    crm = seeded(crm_db)
    hopper = crm.leads["Hopper"]

    async def session(client: Client) -> None:
        refused = await client.call_tool(
            "update_lead", {"lead_id": str(hopper.id), "status": "lost"}
        )
        assert refused.is_error and text(refused) == (
            "Error executing tool update_lead: The API key viewer has scope 'read'; this "
            "needs 'write'. Create a key with --scope write."
        )

    run_client(crm_db, crm.read_token, session)
    assert crm_db.scalar("SELECT status FROM leads WHERE id = %s", (hopper.id,)) != "lost"


def test_activities_tasks_and_owners_through_the_tools(crm_db: Database) -> None:
    crm = seeded(crm_db)
    hopper = crm.leads["Hopper"]
    converted = str(crm_db.scalar("SELECT id FROM leads WHERE is_converted LIMIT 1"))
    with crm_db.connect() as conn, session.transaction(conn, "setup"):
        ada = users.add_user(conn, "Ada Agent", "ada@example.com")
        bob = users.add_user(conn, "Bob Seller", "bob@example.com")
        _, token = apikeys.create_key(conn, "ada-agent", "write", ada.id)

    async def work(client: Client) -> None:
        call = data(await client.call_tool("log_activity", {
            "kind": "call", "subject": "Discovery call", "lead_id": str(hopper.id),
            "body": "Wants a demo next week.\nBudget approved.",
        }))  # fmt: skip
        assert call["author"] == "ada-agent" and call["body"].endswith("Budget approved.")
        later = data(await client.call_tool("log_activity", {
            "kind": "task", "subject": "Send the demo invite", "lead_id": str(hopper.id),
            "due_at": "2026-12-24T09:00:00+00:00", "assignee": "ada@example.com",
        }))  # fmt: skip
        sooner = data(await client.call_tool("log_activity", {
            "kind": "task", "subject": "Call back", "lead_id": str(hopper.id),
            "due_at": "2026-12-03T09:00:00+00:00", "assignee": str(ada.id),
        }))  # fmt: skip
        mine = data(await client.call_tool("my_open_tasks", {}))
        assert mine["user"]["email"] == "ada@example.com"
        assert [t["id"] for t in mine["tasks"]] == [sooner["id"], later["id"]]

        done = data(await client.call_tool("complete_task", {"activity_id": sooner["id"]}))
        assert done["done_at"] is not None
        again = data(await client.call_tool("complete_task", {"activity_id": sooner["id"]}))
        assert again["done_at"] == done["done_at"]  # idempotent
        mine = data(await client.call_tool("my_open_tasks", {}))
        assert [t["id"] for t in mine["tasks"]] == [later["id"]]

        moved = data(await client.call_tool("reassign", {
            "record_type": "lead", "record_id": str(hopper.id), "owner": "bob@example.com",
        }))  # fmt: skip
        assert moved["owner_id"] == str(bob.id)

        for name, arguments, message in [
            ("complete_task", {"activity_id": call["id"]}, "not a task"),
            ("reassign", {"record_type": "lead", "record_id": converted,
                          "owner": "bob@example.com"}, "read-only"),
            ("reassign", {"record_type": "lead", "record_id": str(hopper.id),
                          "owner": "nobody@example.com"}, "nobody@example.com"),
            ("log_activity", {"kind": "note", "subject": "x", "due_at": "2026-12-03T09:00Z",
                              "lead_id": str(hopper.id)}, "Only a task"),
            ("log_activity", {"kind": "task", "subject": "x", "due_at": "tomorrow",
                              "lead_id": str(hopper.id)}, "is not a time"),
            ("log_activity", {"kind": "note", "subject": "x"}, "exactly one"),
        ]:  # fmt: skip
            failed = await client.call_tool(name, arguments)
            assert failed.is_error and message in text(failed), (name, text(failed))
            assert "\n" not in text(failed)

    run_client(crm_db, token, work)
    assert crm_db.scalar("SELECT owner_id FROM leads WHERE id = %s", (hopper.id,)) == bob.id
    assert (
        crm_db.scalar(
            "SELECT count(*) FROM crm_history WHERE row_id = %s AND actor = 'ada-agent' "
            "AND changes ? 'owner_id'",
            (hopper.id,),
        )
        == 1
    )

    async def viewer(client: Client) -> None:
        refused = await client.call_tool(
            "log_activity", {"kind": "note", "subject": "x", "lead_id": str(hopper.id)}
        )
        assert refused.is_error and "this needs 'write'" in text(refused)
        nobody = await client.call_tool("my_open_tasks", {})
        assert nobody.is_error and "belongs to no user" in text(nobody)

    run_client(crm_db, crm.read_token, viewer)
    assert crm_db.scalar("SELECT count(*) FROM activities WHERE author = 'ada-agent'") == 3
