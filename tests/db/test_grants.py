"""``aicrm db grant ROLE --scope …``: a role with nothing but that grant runs aicrm's
CLI, API and MCP server at its scope, and is refused beyond it; granting is
idempotent; each refusal's advice, followed, works."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from mcp.client.client import Client
from psycopg import sql
from psycopg.conninfo import make_conninfo

from aicrm import config
from aicrm.db import target
from aicrm.db.script import trusted
from aicrm.server import create_app
from tests.api.conftest import start_server, stop_server
from tests.conftest import Database
from tests.mcp.test_server import data, run_client, text
from tests.web.seed import Seeded, seed


@pytest.fixture
def roles(crm_db: Database) -> Iterator[dict[str, str]]:
    """A login role per scope, without any privilege of its own; dropped after."""
    suffix = uuid.uuid4().hex[:8]
    made = {scope: f"aicrm_{scope}_{suffix}" for scope in ("read", "write", "admin", "none")}
    with crm_db.connect(autocommit=True) as conn:
        for role in made.values():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield made
    finally:
        with crm_db.connect(autocommit=True) as conn:
            for role in made.values():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(crm_db.server.admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(crm_db.name)
                )
            )
            for role in made.values():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def as_role(db: Database, role: str) -> Database:
    url = make_conninfo(db.url, user=role)
    return dataclasses.replace(db, url=url, env={**db.env, "DATABASE_URL": url})


def granted(db: Database, role: str, scope: str) -> dict[str, Any]:
    result = db.cli("db", "grant", role, "--scope", scope, "--json")
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def ok(db: Database, *args: str) -> Any:
    result = db.cli(*args, "--json")
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout) if result.stdout.strip() else None


def refused(db: Database, *args: str) -> str:
    result = db.cli(*args)
    assert result.returncode == 2, (args, result.returncode, result.stderr)
    assert "permission denied" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def seeded(db: Database) -> Seeded:
    with db.connect() as conn:
        return seed(conn)


@pytest.mark.slow
def test_grant_is_idempotent_and_reports(crm_db: Database, roles: dict[str, str]) -> None:
    first = granted(crm_db, roles["write"], "write")
    # Everything granted but USAGE on the schema, which PUBLIC holds by default.
    assert all(p["granted"] for p in first["privileges"] if p["privilege"] != "USAGE")
    assert {"privilege": "INSERT", "on": "lead_merges", "granted": True} in first["privileges"]
    keys = [p for p in first["privileges"] if p["on"] == "api_keys"]
    assert [p["privilege"] for p in keys] == ["SELECT"]  # no INSERT: keys are admin's
    again = granted(crm_db, roles["write"], "write")
    assert again["privileges"] == [{**p, "granted": False} for p in first["privileges"]]
    assert len(again["privileges"]) > 20
    text_out = crm_db.cli("db", "grant", roles["write"], "--scope", "write").stdout
    assert "0 privilege(s) granted" in text_out


@pytest.mark.slow
def test_read_scope(crm_db: Database, roles: dict[str, str]) -> None:
    crm = seeded(crm_db)
    granted(crm_db, roles["read"], "read")
    reader = as_role(crm_db, roles["read"])
    lead = crm.leads["Lovelace"]
    assert ok(reader, "leads", "show", str(lead.id))["email"] == lead.email
    assert ok(reader, "leads", "list")["items"]
    assert ok(reader, "leads", "history", str(lead.id))
    assert ok(reader, "report", "conversions")
    assert ok(reader, "report", "funnel")
    assert ok(reader, "statuses", "list")
    assert ok(reader, "db", "status")["version"] >= 9
    refused(reader, "leads", "create", "--email", "no@example.org")
    refused(reader, "leads", "update", str(lead.id), "--status", "lost")
    # The API and the MCP server, served by the read role, with a read key.
    app = create_app(target(config.resolve({**reader.env})), pool_size=2)
    server, thread, base = start_server(app)
    try:
        headers = {"Authorization": f"Bearer {crm.read_token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            assert client.get(f"/api/leads/{lead.id}").status_code == 200
            listed = client.get("/api/leads")
            assert listed.status_code == 200, listed.text
            assert client.get("/api/reports/status-funnel").status_code == 200
    finally:
        stop_server(server, thread)

    async def session(client: Client) -> None:
        found = data(await client.call_tool("search_leads", {"search": "lovel"}))
        assert [x["id"] for x in found["items"]] == [str(lead.id)]
        one = data(await client.call_tool("get_lead", {"lead_id": str(lead.id),
                                                       "include_history": True}))  # fmt: skip
        assert one["history"]

    run_client(reader, crm.read_token, session)


@pytest.mark.slow
def test_write_scope(crm_db: Database, roles: dict[str, str]) -> None:
    crm = seeded(crm_db)
    granted(crm_db, roles["write"], "write")
    writer = as_role(crm_db, roles["write"])
    made = ok(writer, "leads", "create", "--email", "w1@example.org", "--company", "W1")
    twin = ok(writer, "leads", "create", "--email", "w2@example.org", "--first-name", "W")
    ok(writer, "leads", "update", made["id"], "--status", "contacted")
    ok(writer, "leads", "merge", made["id"], twin["id"])
    ok(writer, "contacts", "create", "--lead", made["id"], "--email", "wc@example.org")
    converted = ok(writer, "leads", "convert", made["id"])
    doomed = ok(writer, "leads", "create", "--email", "w3@example.org")
    assert writer.cli("leads", "delete", doomed["id"]).returncode == 0
    csv = writer.workdir / "w.csv"
    csv.write_text("email,source\nwi1@example.org,fair\n")
    assert ok(writer, "leads", "import", str(csv))["imported"] == 1
    refused(writer, "apikey", "create", "bot", "--scope", "read")
    refused(writer, "statuses", "add", "demo_scheduled")
    refused(writer, "webhooks", "add", "http://127.0.0.1:9/", "--events", "*")
    app = create_app(target(config.resolve({**writer.env})), pool_size=2)
    server, thread, base = start_server(app)
    try:
        headers = {"Authorization": f"Bearer {crm.write_token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            created = client.post("/api/leads", json={"email": "api@example.org"})
            assert created.status_code == 201, created.text
            assert client.get(f"/api/clients/{converted['client_id']}").status_code == 200
    finally:
        stop_server(server, thread)

    async def session(client: Client) -> None:
        result = await client.call_tool("create_lead", {"email": "mcp@example.org"})
        assert not result.is_error, text(result)

    run_client(writer, crm.write_token, session)


@pytest.mark.slow
def test_admin_scope(crm_db: Database, roles: dict[str, str]) -> None:
    granted(crm_db, roles["admin"], "admin")
    admin = as_role(crm_db, roles["admin"])
    key = admin.cli("apikey", "create", "bot", "--scope", "read")
    assert key.returncode == 0, key.stderr
    assert admin.cli("apikey", "revoke", "bot").returncode == 0
    added = admin.cli("statuses", "add", "demo_scheduled", "--after", "contacted")
    assert added.returncode == 0, added.stderr
    made = ok(admin, "leads", "create", "--email", "a@example.org", "--status", "demo_scheduled")
    assert made["status"] == "demo_scheduled"
    hook = admin.cli("webhooks", "add", "http://127.0.0.1:9/", "--events", "lead.*")
    assert hook.returncode == 0, hook.stderr
    ok(admin, "leads", "create", "--email", "hook@example.org")
    assert ok(admin, "webhooks", "list")[0]["pending"] == 1
    run = admin.cli("webhooks", "run", "--once", "--max-attempts", "1")  # port 9: refused
    assert run.returncode == 0, run.stderr
    assert ok(admin, "webhooks", "list")[0]["dead"] == 1


@pytest.mark.slow
def test_the_admin_scope_can_import_history_and_the_write_scope_cannot(
    crm_db: Database, roles: dict[str, str]
) -> None:
    from aicrm.db import grants

    with crm_db.connect() as conn:  # as `aicrm db grant` does (the CLI is tested above)
        grants.grant(conn, roles["admin"], "admin")
        grants.grant(conn, roles["write"], "write")
        conn.commit()
    admin = as_role(crm_db, roles["admin"])
    # The historical import writes the past into crm_history: the admin scope can.
    past = admin.workdir / "past.csv"
    past.write_text(
        "email,status,created_at,contacted_at,status_at,conversion_date\n"
        "h1@example.org,lost,2025-01-02T10:00:00Z,2025-01-05T10:00:00Z,2025-02-01T10:00:00Z,\n"
        "h2@example.org,converted,2025-01-02T10:00:00Z,,,2025-03-01T10:00:00Z\n"
    )
    assert ok(admin, "leads", "import", str(past), "--historical")["imported"] == 2
    changes = crm_db.execute(
        "SELECT l.email, h.operation, h.changed_at::date::text FROM crm_history h "
        "JOIN leads l ON l.id = h.row_id WHERE l.email LIKE 'h_@example.org' "
        "ORDER BY l.email, h.changed_at, h.id"
    )
    assert changes == [
        ("h1@example.org", "insert", "2025-01-02"), ("h1@example.org", "update", "2025-01-05"),
        ("h1@example.org", "update", "2025-02-01"), ("h2@example.org", "insert", "2025-01-02"),
        ("h2@example.org", "update", "2025-03-01"),
    ]  # fmt: skip
    # ... and the write scope cannot (it may not rewrite the history).
    writer = as_role(crm_db, roles["write"])
    again = writer.workdir / "past2.csv"
    again.write_text(past.read_text().replace("@example.org", "@example.net"))
    refused(writer, "leads", "import", str(again), "--historical")


@pytest.mark.slow
def test_refusals_and_their_advice(crm_db: Database, roles: dict[str, str]) -> None:
    ghost = f"aicrm_ghost_{uuid.uuid4().hex[:8]}"
    missing = crm_db.cli("db", "grant", ghost, "--scope", "read")
    assert missing.returncode == 2
    advice = f'CREATE ROLE "{ghost}" LOGIN'
    assert advice in missing.stderr
    assert crm_db.cli("db", "grant", roles["read"], "--scope", "root").returncode == 2
    # Run by a role that does not own the tables: refused, nothing granted.
    other = as_role(crm_db, roles["none"])
    result = other.cli("db", "grant", roles["read"], "--scope", "read")
    assert result.returncode == 2, result.stderr
    assert "Connect as their owner" in result.stderr
    reader = as_role(crm_db, roles["read"])
    refused(reader, "leads", "list")
    # The advice followed: as the owner.
    assert crm_db.cli("db", "grant", roles["read"], "--scope", "read").returncode == 0
    assert ok(reader, "leads", "list") is not None
    # The missing role's advice followed.
    with crm_db.connect(autocommit=True) as conn:
        conn.execute(trusted(advice))  # as aicrm's advice says (a test's role: no password)
    try:
        assert crm_db.cli("db", "grant", ghost, "--scope", "read").returncode == 0
    finally:
        with crm_db.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(ghost)))
        with psycopg.connect(crm_db.server.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(ghost)))
