"""Clients and contacts over real HTTP (CRUD, filters, ETags), and the reports."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import Live, assert_problem, unique


def test_clients_crud_filters_and_etags(api: httpx.Client) -> None:
    industry = unique("ind")
    made = api.post("/api/clients", json={"name": "Acme", "industry": industry,
                                          "attributes": {"region": "north"}})  # fmt: skip
    assert made.status_code == 201, made.text
    client = made.json()
    tag = made.headers["etag"]
    assert made.headers["location"] == f"/api/clients/{client['id']}"
    api.post("/api/clients", json={"name": "Other", "industry": industry})
    listed = api.get("/api/clients", params={"industry": industry, "limit": 1})
    assert len(listed.json()["items"]) == 1 and listed.json()["next_cursor"]
    second = api.get("/api/clients", params={"industry": industry,
                                             "cursor": listed.json()["next_cursor"]})  # fmt: skip
    assert [c["name"] for c in second.json()["items"]] == ["Acme"]
    assert (
        api.get("/api/clients", params={"q": "acm", "industry": industry}).json()["items"][0]["id"]
        == client["id"]
    )
    assert (
        api.get("/api/clients", params={"attr": "region=north", "industry": industry}).json()[
            "items"
        ][0]["id"]
        == client["id"]
    )

    assert (
        api.get(f"/api/clients/{client['id']}", headers={"If-None-Match": tag}).status_code == 304
    )
    changed = api.patch(f"/api/clients/{client['id']}", json={"name": "Acme Ltd"},
                        headers={"If-Match": tag})  # fmt: skip
    assert changed.status_code == 200 and changed.json()["name"] == "Acme Ltd"
    stale = api.patch(
        f"/api/clients/{client['id']}", json={"name": "Old"}, headers={"If-Match": tag}
    )
    assert assert_problem(stale, 412)["conflicting"]["name"] == "Acme Ltd"
    body = assert_problem(api.patch(f"/api/clients/{client['id']}", json={"name": None}), 422)
    assert body["errors"][0]["field"] == "name"
    body = assert_problem(api.post("/api/clients", json={"name": "  "}), 422)
    assert body["errors"][0]["field"] == "name"

    history = api.get(f"/api/clients/{client['id']}/history").json()
    assert [e["operation"] for e in history] == ["insert", "update"]
    at = history[0]["changed_at"]
    assert api.get(f"/api/clients/{client['id']}/as-of", params={"at": at}).json()["name"] == "Acme"
    assert api.delete(f"/api/clients/{client['id']}").status_code == 204
    assert_problem(api.get(f"/api/clients/{client['id']}"), 404)


def test_a_client_with_conversions_is_kept(api: httpx.Client) -> None:
    lead = api.post("/api/leads", json={"company_name": unique("Kept ")}).json()
    client_id = api.post(f"/api/leads/{lead['id']}/convert").json()["client_id"]
    body = assert_problem(api.delete(f"/api/clients/{client_id}"), 409)
    assert body["conflicting"] == [{"kind": "lead", "id": lead["id"]}]


@pytest.mark.slow
def test_contacts_crud_and_moves(live: Live, api: httpx.Client) -> None:
    lead = api.post("/api/leads", json={"first_name": "Parent"}).json()
    client = api.post("/api/clients", json={"name": "Parent Co"}).json()
    email = f"{unique()}@example.com"
    made = api.post("/api/contacts", json={"lead_id": lead["id"], "first_name": "Cleo",
                                           "email": email, "title": "CTO"})  # fmt: skip
    assert made.status_code == 201, made.text
    contact = made.json()
    assert contact["lead_id"] == lead["id"] and contact["client_id"] is None
    listed = api.get("/api/contacts", params={"lead_id": lead["id"]}).json()["items"]
    assert [c["id"] for c in listed] == [contact["id"]]
    assert (
        api.get("/api/contacts", params={"q": email.split("@")[0]}).json()["items"][0]["id"]
        == (contact["id"])
    )
    body = assert_problem(api.post("/api/contacts", json={"first_name": "Orphan"}), 422)
    assert body["errors"][0]["field"] == "lead_id"
    missing = "00000000-0000-4000-8000-0000000000ff"
    body = assert_problem(api.post("/api/contacts", json={"client_id": missing}), 422)
    assert body["errors"][0]["field"] == "client_id"
    body = assert_problem(
        api.post("/api/contacts", json={"client_id": client["id"], "email": email}), 409
    )
    assert body["conflicting"][0]["id"] == contact["id"]

    moved = api.patch(f"/api/contacts/{contact['id']}", json={"client_id": client["id"]},
                      headers={"If-Match": made.headers["etag"]})  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert moved.json()["client_id"] == client["id"] and moved.json()["lead_id"] is None
    stale = api.patch(f"/api/contacts/{contact['id']}", json={"title": "CEO"},
                      headers={"If-Match": made.headers["etag"]})  # fmt: skip
    assert_problem(stale, 412)
    assert [
        c["id"]
        for c in api.get("/api/contacts", params={"client_id": client["id"]}).json()["items"]
    ] == [contact["id"]]
    history = api.get(f"/api/contacts/{contact['id']}/history").json()
    assert {e["actor"] for e in history} == {live.names["write"]}
    assert api.delete(f"/api/contacts/{contact['id']}").status_code == 204
    assert_problem(api.get(f"/api/contacts/{contact['id']}"), 404)
    # Deleted, but still in the history and as it was.
    assert api.get(f"/api/contacts/{contact['id']}/history").json()[-1]["operation"] == "delete"
    was = api.get(f"/api/contacts/{contact['id']}/as-of", params={"at": history[0]["changed_at"]})
    assert was.status_code == 200 and was.json()["lead_id"] == lead["id"]


def test_reports(api: httpx.Client) -> None:
    source = unique("rep")
    leads = [api.post("/api/leads", json={"first_name": f"R{n}", "source": source}).json()
             for n in range(3)]  # fmt: skip
    converted = api.post(f"/api/leads/{leads[0]['id']}/convert").json()
    summary = api.get("/api/reports/conversion-summary")
    assert summary.status_code == 200
    row = next(r for r in summary.json() if r["source"] == source)
    assert (row["total_leads"], row["converted_leads"], row["active_leads"]) == (3, 1, 2)
    assert abs(row["conversion_rate"] - 1 / 3) < 1e-9
    history = api.get(f"/api/reports/client-lead-history/{converted['client_id']}")
    assert history.status_code == 200
    assert [r["lead_id"] for r in history.json()] == [leads[0]["id"]]
    funnel = api.get("/api/reports/status-funnel")
    assert funnel.status_code == 200
    assert [s["status"] for s in funnel.json()][:4] == [
        "new",
        "contacted",
        "qualified",
        "converted",
    ]
