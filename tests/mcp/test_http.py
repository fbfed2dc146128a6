"""MCP over streamable HTTP at ``/mcp`` in a real ``aicrm serve``: the SDK's own HTTP
client, the API's keys and scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import anyio
import httpx
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.api.test_instances import Instance, serve, stop
from tests.conftest import Database
from tests.mcp.test_server import data, seeded, text
from tests.web.seed import Seeded

pytestmark = pytest.mark.slow


@pytest.fixture
def served(crm_db: Database) -> Iterator[tuple[Instance, Seeded]]:
    crm = seeded(crm_db)
    instance = serve(crm_db)
    try:
        yield instance, crm
    finally:
        stop(instance)


def over_http(
    url: str, headers: dict[str, str], session: Callable[[Client], Awaitable[None]]
) -> None:
    """Run ``session`` with the SDK's client over streamable HTTP, sending ``headers``."""

    async def main() -> None:
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            transport = streamable_http_client(f"{url}/mcp", http_client=http)
            async with Client(transport, read_timeout_seconds=60) as client:
                await session(client)

    anyio.run(main)


def test_the_tools_over_http_under_each_callers_key(
    served: tuple[Instance, Seeded], crm_db: Database
) -> None:
    instance, crm = served
    lovelace = crm.leads["Lovelace"]

    async def writer(client: Client) -> None:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"search_leads", "create_lead", "convert_lead"} <= names
        found = data(await client.call_tool("search_leads", {"search": "lovel"}))
        assert [lead["id"] for lead in found["items"]] == [str(lovelace.id)]
        made = data(await client.call_tool("create_lead", {
            "first_name": "Katherine", "last_name": "Johnson", "email": "kj@langley.example",
        }))  # fmt: skip
        assert made["status"] == "new"

    over_http(instance.url, {"Authorization": f"Bearer {crm.write_token}"}, writer)
    actors = crm_db.execute(
        "SELECT DISTINCT actor FROM crm_history h JOIN leads l ON l.id = h.row_id "
        "WHERE l.email = 'kj@langley.example'"
    )
    assert actors == [("maria.sales",)]  # the write key's name

    async def reader(client: Client) -> None:
        lead = data(await client.call_tool("get_lead", {"lead_id": str(lovelace.id)}))
        assert lead["lead"]["email"] == lovelace.email
        refused = await client.call_tool("create_lead", {"email": "no@example.com"})
        assert refused.is_error
        assert text(refused) == (
            "Error executing tool create_lead: The API key viewer has scope 'read'; this "
            "needs 'write'. Create a key with --scope write."
        )

        crm_db.execute("UPDATE api_keys SET revoked_at = now() WHERE name = 'viewer'")
        with pytest.raises(MCPError):  # the next request is refused (401) before any tool
            await client.call_tool("conversion_summary", {})

    over_http(instance.url, {"X-API-Key": crm.read_token}, reader)
    assert crm_db.scalar("SELECT count(*) FROM leads WHERE email = 'no@example.com'") == 0


def test_no_key_a_wrong_key_or_the_dashboard_cookie_get_401(
    served: tuple[Instance, Seeded],
) -> None:
    instance, crm = served
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream"}
    for headers, cookies in [
        ({}, {}),
        ({"Authorization": "Bearer aicrm_0000000000_" + "x" * 43}, {}),
        ({}, {"aicrm_key": crm.write_token}),  # the dashboard's cookie is not a key here
    ]:
        answer = httpx.post(
            f"{instance.url}/mcp", json=hello, headers=accept | headers, cookies=cookies
        )
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "A valid API key is required" in answer.json()["detail"]
