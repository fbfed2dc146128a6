"""Activities, users, owners, timelines and tasks over real HTTP (issue #17): what each
scope may do, the owner filter, the timeline's pages, my open tasks."""

from __future__ import annotations

from typing import Any

import httpx

from aicrm import apikeys
from aicrm.crm import session, users
from tests.api.conftest import Live, assert_problem, unique

ODD = "Zoë «<b>&amp;</b>» 'quote\" \\ ;DROP TABLE leads;-- 🙂 \u202e"


def make_user(live: Live, name: str = ODD) -> dict[str, Any]:
    admin = live.client("admin")
    response = admin.post("/api/users", json={"name": name, "email": f"{unique('u')}@x.org"})
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def make_lead(api: httpx.Client, **values: object) -> dict[str, Any]:
    response = api.post("/api/leads", json={"email": f"{unique()}@x.org", **values})
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def test_users_need_admin_to_change_and_read_to_list(live: Live) -> None:
    user = make_user(live)
    assert user["name"] == ODD and user["active"] is True
    for scope in ("read", "write"):
        refused = live.client(scope).post("/api/users", json={"name": "x", "email": "x@x.org"})
        assert_problem(refused, 403)
        assert_problem(live.client(scope).post(f"/api/users/{user['id']}/deactivate"), 403)
    reader = live.client("read")
    assert user in reader.get("/api/users").json()
    assert reader.get(f"/api/users/{user['email'].upper()}").json() == user
    assert_problem(reader.get("/api/users/nobody@x.org"), 404)
    again = live.client("admin").post(
        "/api/users", json={"name": "y", "email": user["email"].upper()}
    )
    assert_problem(again, 409)
    gone = live.client("admin").post(f"/api/users/{user['email']}/deactivate")
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert user["id"] not in {u["id"] for u in reader.get("/api/users?active=true").json()}


def test_owner_on_create_filter_and_reassign_with_history(live: Live, api: httpx.Client) -> None:
    ada, bob = make_user(live, "Ada"), make_user(live, "Bob")
    lead = make_lead(api, owner_id=ada["email"])
    assert lead["owner_id"] == ada["id"]
    assert api.get(f"/api/leads/{lead['id']}").json()["owner_id"] == ada["id"]
    listed = api.get("/api/leads", params={"owner": ada["email"]}).json()["items"]
    assert [item["id"] for item in listed] == [lead["id"]]
    moved = api.patch(f"/api/leads/{lead['id']}", json={"owner_id": bob["id"]})
    assert moved.status_code == 200 and moved.json()["owner_id"] == bob["id"]
    assert api.get("/api/leads", params={"owner": ada["id"]}).json()["items"] == []
    last = api.get(f"/api/leads/{lead['id']}/history").json()[-1]
    assert last["changes"] == {"owner_id": [ada["id"], bob["id"]]}
    assert last["actor"] == live.names["write"]
    assert_problem(api.get("/api/leads", params={"owner": "nobody@x.org"}), 422)
    assert_problem(api.post("/api/leads", json={"first_name": "x", "owner_id": "no@x.org"}), 422)
    client = api.post("/api/clients", json={"name": ODD, "owner_id": bob["email"]}).json()
    assert client["owner_id"] == bob["id"]
    found = api.get("/api/clients", params={"owner": bob["email"]}).json()["items"]
    assert [item["id"] for item in found] == [client["id"]]


def test_activities_by_scope_odd_text_and_conversion(live: Live, api: httpx.Client) -> None:
    lead = make_lead(api, company_name="Acme")
    body = {
        "kind": "call", "subject": ODD, "body": ODD, "lead_id": lead["id"],
        "attributes": {ODD: [ODD, 1, None]},
    }  # fmt: skip
    assert_problem(live.client("read").post("/api/activities", json=body), 403)
    created = api.post("/api/activities", json=body)
    assert created.status_code == 201, created.text
    activity = created.json()
    assert created.headers["location"] == f"/api/activities/{activity['id']}"
    assert (activity["subject"], activity["body"]) == (ODD, ODD)
    assert activity["attributes"] == {ODD: [ODD, 1, None]}
    assert activity["author"] == live.names["write"]
    reader = live.client("read")
    assert reader.get(f"/api/activities/{activity['id']}").json() == activity
    page = reader.get(f"/api/leads/{lead['id']}/activities").json()
    assert [a["id"] for a in page["items"]] == [activity["id"]]
    assert reader.get(f"/api/leads/{lead['id']}/activities?kind=note").json()["items"] == []
    # one record, exactly; a known record; a known kind
    both = body | {"client_id": lead["id"]}
    assert_problem(api.post("/api/activities", json=both), 422)
    assert_problem(api.post("/api/activities", json=body | {"kind": "fax"}), 422)
    missing = body | {"lead_id": "00000000-0000-0000-0000-000000000001"}
    assert_problem(api.post("/api/activities", json=missing), 404)
    # conversion moves it to the client
    converted = api.post(f"/api/leads/{lead['id']}/convert").json()
    client_page = reader.get(f"/api/clients/{converted['client_id']}/activities").json()
    assert [a["id"] for a in client_page["items"]] == [activity["id"]]
    assert reader.get(f"/api/leads/{lead['id']}/activities").json()["items"] == []


def test_tasks_mine_and_completion(live: Live, api: httpx.Client) -> None:
    ada = make_user(live, "Ada")
    with live.db.connect() as conn, session.transaction(conn):
        _, token = apikeys.create_key(conn, unique("ada"), "write", users.user_id(conn, ada["id"]))
    mine = live.client(None, headers={"Authorization": f"Bearer {token}"})
    lead = make_lead(api)
    later = {"kind": "task", "subject": "later", "lead_id": lead["id"],
             "assignee": ada["email"], "due_at": "2031-01-01T00:00:00Z"}  # fmt: skip
    soon = later | {"subject": "soon", "due_at": "2030-01-01T00:00:00Z"}
    ids = [api.post("/api/activities", json=b).json()["id"] for b in (later, soon)]
    tasks = mine.get("/api/tasks", params={"mine": "true"}).json()
    assert [t["id"] for t in tasks] == [ids[1], ids[0]]
    assert [t["id"] for t in api.get("/api/tasks", params={"assignee": ada["email"]}).json()] == [
        ids[1],
        ids[0],
    ]
    # a key of nobody has no "mine"
    assert_problem(api.get("/api/tasks", params={"mine": "true"}), 422)
    assert_problem(api.get("/api/tasks"), 422)
    assert_problem(live.client("read").post(f"/api/activities/{ids[1]}/done"), 403)
    done = mine.post(f"/api/activities/{ids[1]}/done")
    assert done.status_code == 200 and done.json()["done_at"] is not None
    assert [t["id"] for t in mine.get("/api/tasks?mine=true").json()] == [ids[0]]
    note = api.post(
        "/api/activities", json={"kind": "note", "subject": "n", "lead_id": lead["id"]}
    ).json()
    assert_problem(api.post(f"/api/activities/{note['id']}/done"), 422)
    assert_problem(api.post("/api/activities", json=later | {"kind": "note"}), 422)


def test_timeline_pages_newest_first(live: Live, api: httpx.Client) -> None:
    lead = make_lead(api)
    api.post("/api/activities", json={"kind": "note", "subject": "one", "lead_id": lead["id"]})
    api.patch(f"/api/leads/{lead['id']}", json={"status": "contacted"})
    api.post("/api/activities", json={"kind": "email", "subject": "two", "lead_id": lead["id"]})
    reader = live.client("read")
    whole = reader.get(f"/api/leads/{lead['id']}/timeline").json()
    assert [(e["kind"], e.get("operation")) for e in whole["items"]] == [
        ("activity", None),
        ("history", "update"),
        ("activity", None),
        ("history", "insert"),
    ]
    assert whole["items"][0]["activity"]["subject"] == "two"
    assert whole["next_cursor"] is None
    seen: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = reader.get(f"/api/leads/{lead['id']}/timeline", params=params).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == whole["items"]
    assert_problem(reader.get(f"/api/leads/{lead['id']}/timeline?cursor=bad"), 422)
    assert_problem(reader.get("/api/leads/00000000-0000-0000-0000-000000000001/timeline"), 404)
    client = api.post("/api/clients", json={"name": "C"}).json()
    assert reader.get(f"/api/clients/{client['id']}/timeline").json()["items"][0]["kind"] == (
        "history"
    )
