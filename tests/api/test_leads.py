"""Leads over real HTTP: CRUD with ETags, filters, search, cursor pagination, convert,
merge, history (the actor is the key's name) and as-of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.api.conftest import Live, assert_problem, unique


def make(api: httpx.Client, **values: object) -> dict[str, Any]:
    response = api.post("/api/leads", json=values)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def test_crud_with_etags(live: Live, api: httpx.Client) -> None:
    created = api.post("/api/leads", json={"first_name": "Ada", "company_name": "Engines"})
    assert created.status_code == 201
    lead = created.json()
    assert created.headers["location"] == f"/api/leads/{lead['id']}"
    assert lead["status"] == "new" and lead["is_converted"] is False
    first_tag = created.headers["etag"]

    got = api.get(f"/api/leads/{lead['id']}")
    assert got.status_code == 200 and got.json() == lead and got.headers["etag"] == first_tag
    assert (
        api.get(f"/api/leads/{lead['id']}", headers={"If-None-Match": first_tag}).status_code == 304
    )

    changed = api.patch(f"/api/leads/{lead['id']}", json={"last_name": "Lovelace",
                        "status": "contacted"}, headers={"If-Match": first_tag})  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["last_name"] == "Lovelace" and changed.json()["first_name"] == "Ada"
    second_tag = changed.headers["etag"]
    assert second_tag != first_tag

    stale = api.patch(f"/api/leads/{lead['id']}", json={"last_name": "Byron"},
                      headers={"If-Match": first_tag})  # fmt: skip
    body = assert_problem(stale, 412)
    assert body["conflicting"]["last_name"] == "Lovelace"
    assert stale.headers["etag"] == second_tag
    assert api.get(f"/api/leads/{lead['id']}").json()["last_name"] == "Lovelace"

    # An empty change still honours If-Match; null clears a field.
    assert_problem(
        api.patch(f"/api/leads/{lead['id']}", json={}, headers={"If-Match": first_tag}), 412
    )
    cleared = api.patch(f"/api/leads/{lead['id']}", json={"company_name": None})
    assert cleared.status_code == 200 and cleared.json()["company_name"] is None

    assert_problem(api.delete(f"/api/leads/{lead['id']}", headers={"If-Match": first_tag}), 412)
    assert api.delete(f"/api/leads/{lead['id']}").status_code == 204
    assert_problem(api.get(f"/api/leads/{lead['id']}"), 404)
    assert_problem(api.patch(f"/api/leads/{lead['id']}", json={"first_name": "x"}), 404)


def test_list_filters_search_and_cursor_pagination(live: Live, api: httpx.Client) -> None:
    source = unique("src")
    word = unique("zq")
    made = [make(api, first_name=f"P{n}", source=source, attributes={"tier": n % 2})
            for n in range(7)]  # fmt: skip
    make(api, first_name=word, company_name="Searchable", source=source, status="qualified")

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"source": source, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/leads", params=params)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 8 and len(set(seen)) == 8
    assert seen[-7:] == [lead["id"] for lead in reversed(made)]  # newest first

    def ids(**params: Any) -> list[str]:
        response = api.get("/api/leads", params={"source": source, **params})
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert len(ids(status="qualified")) == 1
    assert len(ids(attr="tier=1")) == 3 and len(ids(attr=["tier=0"])) == 4
    assert len(ids(q=word[:6])) == 1  # words are prefixes
    assert ids(converted="true") == []
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert ids(created_from=future) == [] and len(ids(created_to=future)) == 8
    body = assert_problem(api.get("/api/leads", params={"cursor": "not-a-cursor"}), 422)
    assert body["errors"][0]["field"] == "cursor"
    body = assert_problem(api.get("/api/leads", params={"status": "bogus"}), 422)
    assert body["errors"][0] == {
        "field": "status",
        "in": "query",
        "message": body["errors"][0]["message"],
    }
    assert_problem(api.get("/api/leads", params={"limit": 0}), 422)
    assert_problem(api.get("/api/leads", params={"q": "!!!"}), 422)


def test_validation_names_the_field(api: httpx.Client) -> None:
    body = assert_problem(api.post("/api/leads", json={"email": "not-an-email"}), 422)
    assert [e["field"] for e in body["errors"]] == ["email"]
    assert body["errors"][0]["in"] == "body"
    body = assert_problem(api.post("/api/leads", json={"nickname": "x"}), 422)
    assert body["errors"][0]["field"] == "nickname"
    body = assert_problem(api.post("/api/leads", json={"status": "converted"}), 422)
    assert body["errors"][0]["field"] == "status"
    body = assert_problem(api.post("/api/leads", json={"ai_score": "high"}), 422)
    assert body["errors"][0]["field"] == "ai_score"
    body = assert_problem(
        api.post("/api/leads", json={"attributes": {"a": 1}, "email": "a@b"}), 422
    )
    assert body["errors"][0]["field"] == "email"
    body = assert_problem(api.get("/api/leads/12345"), 422)
    assert body["errors"][0] == {
        "field": "lead_id",
        "in": "path",
        "message": body["errors"][0]["message"],
    }
    body = assert_problem(
        api.post("/api/leads", content=b"{not json", headers={"Content-Type": "application/json"}),
        422,
    )
    assert body["errors"][0]["in"] == "body"
    body = assert_problem(api.patch(f"/api/leads/{unique()}", json={}), 422)
    assert body["errors"][0]["field"] == "lead_id"


def test_duplicates_are_409_with_the_conflicting_records(api: httpx.Client) -> None:
    email = f"{unique('dup')}@example.com"
    first = make(api, first_name="First", email=email)
    refused = api.post("/api/leads", json={"first_name": "Second", "email": email.upper()})
    body = assert_problem(refused, 409)
    assert [(m["kind"], m["id"]) for m in body["conflicting"]] == [("lead", first["id"])]
    allowed = api.post("/api/leads", params={"allow_duplicate": "true"},
                       json={"first_name": "Second", "email": email})  # fmt: skip
    assert allowed.status_code == 201
    # Converting either is refused while the other has the email.
    body = assert_problem(api.post(f"/api/leads/{first['id']}/convert"), 409)
    assert body["conflicting"][0]["id"] == allowed.json()["id"]


def test_convert_and_the_actor_in_history(live: Live, api: httpx.Client) -> None:
    lead = make(
        api, first_name="Grace", company_name=unique("Cobol "), email=f"{unique()}@navy.mil"
    )
    done = api.post(f"/api/leads/{lead['id']}/convert")
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["created_client"] is True and result["already_converted"] is False
    client = api.get(f"/api/clients/{result['client_id']}").json()
    assert client["name"] == lead["company_name"]

    again = api.post(f"/api/leads/{lead['id']}/convert", json={"client_id": result["client_id"]})
    assert again.status_code == 200 and again.json()["already_converted"] is True

    other = api.post("/api/clients", json={"name": unique("Other ")}).json()
    refused = api.post(f"/api/leads/{lead['id']}/convert", json={"client_id": other["id"]})
    body = assert_problem(refused, 409)
    assert body["conflicting"]["id"] == lead["id"] and body["conflicting"]["is_converted"] is True

    # A converted lead is read-only but for its ai_* fields, and permanent.
    body = assert_problem(api.patch(f"/api/leads/{lead['id']}", json={"first_name": "G"}), 409)
    assert body["conflicting"]["id"] == lead["id"]
    scored = api.patch(f"/api/leads/{lead['id']}", json={"ai_score": 0.75})
    assert scored.status_code == 200 and scored.json()["ai_score"] == 0.75
    assert api.get(f"/api/leads/{lead['id']}").json()["ai_score"] == 0.75
    assert_problem(api.delete(f"/api/leads/{lead['id']}"), 409)
    assert_problem(api.post(f"/api/leads/{unique()}/convert"), 422)
    missing = "00000000-0000-4000-8000-000000000000"
    assert_problem(api.post(f"/api/leads/{missing}/convert"), 404)

    history = api.get(f"/api/leads/{lead['id']}/history")
    assert history.status_code == 200
    entries = history.json()
    assert [e["operation"] for e in entries][:2] == ["insert", "update"]
    assert {e["actor"] for e in entries} == {live.names["write"]}
    assert entries[1]["changes"]["status"] == ["new", "converted"]
    client_history = api.get(f"/api/clients/{result['client_id']}/history").json()
    assert client_history[0]["actor"] == live.names["write"]


def test_bulk_convert(api: httpx.Client) -> None:
    source = unique("bulk")
    leads = [make(api, first_name=f"B{n}", source=source) for n in range(3)]
    by_ids = api.post("/api/leads/convert", json={"ids": [leads[0]["id"]]})
    assert by_ids.status_code == 200 and by_ids.json()["converted"] == 1
    by_filter = api.post("/api/leads/convert", json={"filter": {"source": source}})
    assert by_filter.status_code == 200 and by_filter.json()["converted"] == 2
    missing = "00000000-0000-4000-8000-000000000001"
    body = assert_problem(api.post("/api/leads/convert", json={"ids": [missing]}), 404)
    assert body["not_found"] == [missing]
    body = assert_problem(api.post("/api/leads/convert", json={}), 422)
    assert body["errors"][0]["field"] == "ids"


def test_merge(api: httpx.Client) -> None:
    keep = make(api, first_name="Kept", email=f"{unique()}@example.com")
    other = make(api, first_name="Other", last_name="Surname", company_name="Co",
                 attributes={"size": 10})  # fmt: skip
    contact = api.post("/api/contacts", json={"lead_id": other["id"], "first_name": "C"})
    assert contact.status_code == 201, contact.text
    merged = api.post(f"/api/leads/{keep['id']}/merge", json={"others": [other["id"]]})
    assert merged.status_code == 200, merged.text
    kept = merged.json()["kept"]
    assert kept["first_name"] == "Kept" and kept["last_name"] == "Surname"
    assert kept["attributes"] == {"size": 10} and merged.json()["contacts_moved"] == 1
    assert_problem(api.get(f"/api/leads/{other['id']}"), 404)
    assert api.get(f"/api/contacts/{contact.json()['id']}").json()["lead_id"] == keep["id"]
    body = assert_problem(
        api.post(f"/api/leads/{keep['id']}/merge", json={"others": [keep["id"]]}), 422
    )
    assert body["errors"][0]["field"] == "others"
    assert_problem(api.post(f"/api/leads/{keep['id']}/merge", json={"others": []}), 422)


def test_as_of(live: Live, api: httpx.Client) -> None:
    lead = make(api, first_name="Before")
    moment = live.db.scalar("SELECT clock_timestamp()")
    assert api.patch(f"/api/leads/{lead['id']}", json={"first_name": "After"}).status_code == 200
    then = api.get(f"/api/leads/{lead['id']}/as-of", params={"at": moment.isoformat()})
    assert then.status_code == 200, then.text
    assert then.json()["first_name"] == "Before"
    naive_utc = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert (
        api.get(f"/api/leads/{lead['id']}/as-of", params={"at": naive_utc}).json()["first_name"]
        == "Before"
    )
    early = (datetime.fromisoformat(lead["created_at"]) - timedelta(days=1)).isoformat()
    assert_problem(api.get(f"/api/leads/{lead['id']}/as-of", params={"at": early}), 404)
    assert_problem(api.get(f"/api/leads/{lead['id']}/as-of", params={"at": "yesterday"}), 422)


def test_read_by_id_fast_route_answers_like_the_documented_one(
    live: Live, api: httpx.Client
) -> None:
    """GET by id is answered by the route placed first (the hot path) for a UUID in any
    spelling FastAPI accepts, and by the documented route for anything else: the
    answers are the documented ones, errors included."""
    attributes = {"région": "Île-de-France", "seats": 12.5, "tags": ["a", {"b": None}]}
    lead = make(api, first_name="Grace", email=f"{unique()}@example.com", attributes=attributes)
    assert lead["attributes"] == attributes
    lower = f"/api/leads/{lead['id']}"
    upper = f"/api/leads/{lead['id'].upper().replace('-', '')}"
    fast, documented = api.get(lower), api.get(upper)
    assert fast.status_code == documented.status_code == 200
    assert fast.json() == documented.json() == lead
    assert fast.headers["etag"] == documented.headers["etag"]
    assert fast.headers["content-type"] == documented.headers["content-type"]
    tag = fast.headers["etag"]
    for path in (lower, upper):
        assert api.get(path, headers={"If-None-Match": f'"other", {tag}'}).status_code == 304
        too_long = api.get(path, headers={"If-None-Match": "x" * 1001})
        assert assert_problem(too_long, 422)["errors"][0]["field"] == "if-none-match"
        assert_problem(live.client(scope=None).get(path), 401)
    missing = "00000000-0000-4000-8000-000000000000"
    for path in (f"/api/leads/{missing}", f"/api/clients/{missing}", f"/api/contacts/{missing}"):
        assert "has id" in assert_problem(api.get(path), 404)["detail"]
    assert assert_problem(api.get("/api/leads/not-a-uuid"), 422)["errors"][0]["field"] == "lead_id"
    # The routes after it still match: the export is not taken for an id.
    assert api.get("/api/leads/export").status_code == 200
