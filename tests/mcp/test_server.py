"""``aicrm mcp`` end to end: the SDK's own client spawns the server over stdio."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import CallToolResult, TextContent

from aicrm.ai import scoring
from aicrm.cli.main import app
from aicrm.cli.mcp import mcp as mcp_command
from tests.conftest import Database
from tests.web.seed import Seeded, seed


def command() -> list[str]:
    """``python -m aicrm mcp`` once the command is registered; until then its twin."""
    registered = any(c.callback is mcp_command for c in app.registered_commands)
    return ["-m", "aicrm", "mcp"] if registered else ["-m", "aicrm.mcp"]


def run_client(
    db: Database,
    token: str,
    session: Callable[[Client], Awaitable[None]],
    *,
    flag: bool = False,
) -> None:
    """Run ``session`` against a server with ``token`` in AICRM_API_KEY (or --api-key)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=[*command(), "--api-key", token] if flag else command(),
        env=db.env if flag else {**db.env, "AICRM_API_KEY": token},
        cwd=str(db.workdir),
    )

    async def main() -> None:
        async with Client(params, read_timeout_seconds=60) as client:
            await session(client)

    anyio.run(main)


def text(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def data(result: CallToolResult) -> Any:
    assert not result.is_error, text(result)
    return (
        result.structured_content
        if result.structured_content is not None
        else json.loads(text(result))
    )


def seeded(db: Database) -> Seeded:
    with db.connect() as conn:
        return seed(conn)


@pytest.mark.slow
def test_every_tool_over_stdio_under_a_write_key(crm_db: Database) -> None:
    crm = seeded(crm_db)
    lovelace, hopper = crm.leads["Lovelace"], crm.leads["Hopper"]
    hamilton = crm.leads["Hamilton"]
    taken = str(hopper.email)

    async def session(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) >= {
            "search_leads", "get_lead", "search_clients", "get_client", "search_contacts",
            "get_contact", "create_lead", "convert_lead", "merge_leads", "annotate",
            "conversion_summary", "explain_score",
        }  # fmt: skip
        for tool in tools.values():
            assert tool.description and len(tool.description) > 30, tool.name
        hints = tools["search_leads"].annotations
        assert hints is not None and hints.read_only_hint
        assert "DELETES" in (tools["merge_leads"].description or "")

        found = data(await client.call_tool("search_leads", {"search": "lovel"}))
        assert [lead["id"] for lead in found["items"]] == [str(lovelace.id)]
        page = data(await client.call_tool("search_leads", {"converted": True, "limit": 2}))
        assert len(page["items"]) == 2 and page["next_cursor"]
        more = {"converted": True, "cursor": page["next_cursor"]}
        rest = data(await client.call_tool("search_leads", more))
        assert len(rest["items"]) == 1

        lead = data(await client.call_tool("get_lead", {"lead_id": str(lovelace.id),
                                                        "include_history": True}))  # fmt: skip
        assert lead["lead"]["email"] == lovelace.email
        assert [c["last_name"] for c in lead["contacts"]] == ["Lovelace-Office"]
        # created (owned by Maria from the start: the seed), its status set
        assert [h["operation"] for h in lead["history"]] == ["insert", "update"]

        clients = data(await client.call_tool("search_clients", {"search": "apollo"}))
        assert [c["name"] for c in clients["items"]] == ["Apollo Software"]
        one = data(await client.call_tool("get_client", {"client_id": clients["items"][0]["id"]}))
        assert [row["lead_id"] for row in one["lead_history"]] == [str(hamilton.id)]
        assert [c["last_name"] for c in one["contacts"]] == ["Hamilton-Office"]

        people = data(await client.call_tool("search_contacts", {"lead_id": str(lovelace.id)}))
        contact_id = people["items"][0]["id"]
        contact = data(await client.call_tool("get_contact", {"contact_id": contact_id}))
        assert contact["title"] == "Head of Operations"

        refused = await client.call_tool("create_lead", {
            "first_name": "Grace", "email": taken.upper(),
        })  # fmt: skip
        assert refused.is_error and f"lead {hopper.id} (Grace Hopper)" in text(refused)
        assert "\n" not in text(refused) and "Traceback" not in text(refused)

        made = data(await client.call_tool("create_lead", {
            "first_name": "Mary", "last_name": "Jackson", "email": "mary@langley.example",
            "company_name": "Langley Research", "source": "mcp",
            "attributes": {"note": "met at a conference"},
        }))  # fmt: skip
        assert made["status"] == "new" and made["attributes"] == {"note": "met at a conference"}
        twin = data(await client.call_tool("create_lead", {
            "last_name": "Jackson", "email": "MARY@langley.example", "allow_duplicate": True,
        }))  # fmt: skip
        merged = data(await client.call_tool("merge_leads", {
            "keep_id": made["id"], "merge_ids": [twin["id"]],
        }))  # fmt: skip
        assert merged["merged"] == [twin["id"]] and merged["kept"]["id"] == made["id"]

        done = data(await client.call_tool("convert_lead", {"lead_id": made["id"]}))
        assert done["created_client"] and not done["already_converted"]
        again = data(await client.call_tool("convert_lead", {"lead_id": made["id"]}))
        assert again["already_converted"] and again["client_id"] == done["client_id"]

        first = {"record_type": "lead", "record_id": made["id"], "annotator": "email_classifier"}
        data(await client.call_tool("annotate", first | {"values": {"intent": "buy"}}))
        notes = data(await client.call_tool("annotate", first | {
            "values": {"urgency": "high"}, "confidence": 0.9, "version": "ec-2",
        }))  # fmt: skip
        entry = notes["ai_annotations"]["email_classifier"]
        assert entry["values"] == {"intent": "buy", "urgency": "high"}  # merged; lead converted
        assert entry["model"] == "email_classifier" and entry["version"] == "ec-2"
        assert entry["confidence"] == 0.9
        kept = data(await client.call_tool("annotate", {
            "record_type": "lead", "record_id": str(lovelace.id), "annotator": "email_classifier",
            "values": {"intent": "browse"},
        }))  # fmt: skip
        assert set(kept["ai_annotations"]) == {"lead_scoring", "email_classifier"}

        summary = data(await client.call_tool("conversion_summary", {}))
        assert {"source": "mcp", "total_leads": 1, "converted_leads": 1, "active_leads": 0,
                "conversion_rate": 1.0} .items() <= next(
            s for s in summary["sources"] if s["source"] == "mcp").items()  # fmt: skip
        assert sum(s["total_leads"] for s in summary["sources"]) == 15
        stages = {stage["status"]: stage for stage in summary["funnel"]}
        assert stages["new"]["reached"] == 15 and stages["converted"]["current"] == 4

        unexplained = await client.call_tool("explain_score", {"lead_id": str(lovelace.id)})
        assert unexplained.is_error and "aicrm ai train" in text(unexplained)
        with crm_db.connect() as conn:
            scoring.train(conn, horizon=10)  # too few leads for a model: a prior
            conn.commit()
        why = data(await client.call_tool("explain_score", {"lead_id": str(lovelace.id)}))
        assert why["lead_id"] == str(lovelace.id) and 0 <= why["score"] <= 1
        assert why["factors"] and {"label", "contribution"} <= set(why["factors"][0])
        done = data(await client.call_tool("explain_score", {"lead_id": str(hamilton.id)}))
        assert done["score"] is None and done["outcome"]["outcome"] == "converted"
        assert done["outcome"]["summary"].startswith("converted on 20")  # no chance shown

        for name, arguments, message in [
            ("get_lead", {"lead_id": "3f2b8c1e-7d4a-4f6b-9a51-2c0e8d7b6a10"}, "No lead has id"),
            ("get_lead", {"lead_id": "nope"}, "is not a valid lead id"),
            ("annotate", first | {"record_id": "nope", "values": {"a": 1}}, "not a valid lead id"),
            ("annotate", first | {"annotator": "Bad Name", "values": {}},
             "is not an annotator name"),
            ("annotate", first | {"record_type": "deal", "values": {}},
             "invalid arguments: record_type: Input should be 'lead', 'client' or 'contact'."),
            ("merge_leads", {"keep_id": made["id"], "merge_ids": [str(lovelace.id)]},
             "is converted and read-only"),
            ("search_leads", {"search": "!!"}, "no words"),
            ("search_leads", {"limit": 1000},
             "invalid arguments: limit: Input should be less than or equal to 100."),
        ]:  # fmt: skip
            failed = await client.call_tool(name, arguments)
            assert failed.is_error and message in text(failed), (name, text(failed))
            assert "\n" not in text(failed) and "Traceback" not in text(failed)

    run_client(crm_db, crm.write_token, session)
    actors = crm_db.execute(
        "SELECT DISTINCT actor FROM crm_history h JOIN leads l ON l.id = h.row_id "
        "WHERE l.email = 'mary@langley.example'"
    )
    assert actors == [("maria.sales",)]
    assert crm_db.scalar("SELECT count(*) FROM lead_merges") == 1


@pytest.mark.slow
def test_a_read_key_reads_but_cannot_change_anything(crm_db: Database) -> None:
    crm = seeded(crm_db)
    lovelace, hopper = crm.leads["Lovelace"], crm.leads["Hopper"]
    before = crm_db.scalar("SELECT md5(string_agg(l::text, '' ORDER BY id)) FROM leads l")

    async def session(client: Client) -> None:
        found = data(await client.call_tool("search_leads", {"status": "qualified"}))
        assert [lead["last_name"] for lead in found["items"]] == ["Lovelace"]
        attempts: list[tuple[str, dict[str, Any]]] = [
            ("create_lead", {"email": "new@example.com"}),
            ("convert_lead", {"lead_id": str(lovelace.id)}),
            ("merge_leads", {"keep_id": str(lovelace.id), "merge_ids": [str(hopper.id)]}),
            ("annotate", {"record_type": "lead", "record_id": str(lovelace.id), "annotator": "x",
                          "values": {"x": 1}}),
        ]  # fmt: skip
        for name, arguments in attempts:
            refused = await client.call_tool(name, arguments)
            assert refused.is_error, name
            assert text(refused) == (
                f"Error executing tool {name}: The API key viewer has scope 'read'; this needs "
                "'write'. Create a key with --scope write."
            )

    run_client(crm_db, crm.read_token, session)
    after = crm_db.scalar("SELECT md5(string_agg(l::text, '' ORDER BY id)) FROM leads l")
    assert after == before


@pytest.mark.slow
def test_a_key_revoked_while_serving_stops_working(crm_db: Database) -> None:
    crm = seeded(crm_db)

    async def session(client: Client) -> None:
        assert not (await client.call_tool("conversion_summary", {})).is_error
        crm_db.execute("UPDATE api_keys SET revoked_at = now() WHERE name = 'viewer'")
        refused = await client.call_tool("conversion_summary", {})
        assert refused.is_error and "is not valid, or it was revoked" in text(refused)

    run_client(crm_db, crm.read_token, session, flag=True)


@pytest.mark.slow
def test_the_server_refuses_to_start_without_a_valid_key(crm_db: Database) -> None:
    for key, message in [
        ("", "needs an API key: set AICRM_API_KEY"),
        ("aicrm_0000000000_" + "x" * 43, "The API key (AICRM_API_KEY or --api-key) is not valid"),
    ]:
        done = subprocess.run(
            [sys.executable, *command()],
            env={**crm_db.env, "AICRM_API_KEY": key},
            cwd=crm_db.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            input="",
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert done.stdout == ""  # stdout belongs to the protocol


@pytest.mark.slow
def test_deleting_a_client_or_a_contact_has_the_apis_refusals(crm_db: Database) -> None:
    crm = seeded(crm_db)
    converted = str(crm_db.scalar("SELECT converted_to_client_id FROM leads WHERE is_converted"))
    lone = str(crm_db.scalar("INSERT INTO clients (name) VALUES ('Solo') RETURNING id"))
    contact = str(crm_db.scalar(
        "INSERT INTO contacts (client_id, email) VALUES (%s, 'c@solo.io') RETURNING id", (lone,)
    ))  # fmt: skip

    async def session(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert "DELETE" in (tools["delete_client"].description or "")
        refused = await client.call_tool("delete_client", {"client_id": converted})
        assert refused.is_error and "converted leads" in text(refused)
        refused = await client.call_tool("delete_client", {"client_id": lone})
        assert refused.is_error and "contacts first" in text(refused)
        gone = data(await client.call_tool("delete_contact", {"contact_id": contact}))
        assert gone["deleted"]["email"] == "c@solo.io"
        assert data(await client.call_tool("delete_client", {"client_id": lone}))["deleted"]
        missing = await client.call_tool("delete_contact", {"contact_id": contact})
        assert missing.is_error and "No contact" in text(missing)

    run_client(crm_db, crm.write_token, session)
    assert crm_db.scalar("SELECT count(*) FROM clients WHERE id = %s", (lone,)) == 0
    assert crm_db.scalar("SELECT count(*) FROM clients WHERE id = %s", (converted,)) == 1
    actors = crm_db.execute(
        "SELECT DISTINCT actor FROM crm_history WHERE row_id = %s AND operation = 'delete'",
        (lone,),
    )
    assert actors == [("maria.sales",)]
