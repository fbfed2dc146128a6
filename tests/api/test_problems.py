"""Every error response is an RFC 9457 problem: type, title, status, detail, as
application/problem+json, whatever produced it."""

from __future__ import annotations

import httpx

from tests.api.conftest import Live, assert_problem, unique

MISSING = "00000000-0000-4000-8000-00000000abcd"


def test_every_error_has_the_problem_shape(live: Live, api: httpx.Client) -> None:
    email = f"{unique()}@example.com"
    lead = api.post("/api/leads", json={"email": email}).json()
    converted = api.post("/api/leads", json={"first_name": "Conv"}).json()
    assert api.post(f"/api/leads/{converted['id']}/convert").status_code == 200
    other_client = api.post("/api/clients", json={"name": "Elsewhere"}).json()
    reader = live.client("read")
    anonymous = live.client(None)
    cases: list[tuple[httpx.Response, int]] = [
        (anonymous.get("/api/leads"), 401),
        (anonymous.get(f"/api/clients/{MISSING}"), 401),
        (reader.post("/api/leads", json={}), 403),
        (api.get("/api/keys"), 403),
        (api.get(f"/api/leads/{MISSING}"), 404),
        (api.get(f"/api/clients/{MISSING}"), 404),
        (api.get(f"/api/contacts/{MISSING}"), 404),
        (api.get(f"/api/leads/{MISSING}/history"), 404),
        (api.get(f"/api/reports/client-lead-history/{MISSING}"), 404),
        (api.get("/api/no-such-thing"), 404),
        (api.get("/nowhere"), 404),
        (api.put(f"/api/leads/{lead['id']}", json={}), 405),
        (api.post("/api/leads", json={"email": email}), 409),
        (
            api.post(
                f"/api/leads/{converted['id']}/convert", json={"client_id": other_client["id"]}
            ),
            409,
        ),
        (
            api.patch(
                f"/api/leads/{lead['id']}",
                json={"first_name": "x"},
                headers={"If-Match": '"stale"'},
            ),
            412,
        ),
        (
            api.post(
                "/api/leads",
                content=b"{" + b" " * (1 << 20) + b"}",
                headers={"Content-Type": "application/json"},
            ),
            413,
        ),
        (api.post("/api/leads", json={"email": "nope"}), 422),
        (api.get("/api/leads", params={"limit": "many"}), 422),
        (api.get("/api/leads/not-a-uuid"), 422),
        (
            api.post(
                "/api/leads", content=b"\xff\xfe", headers={"Content-Type": "application/json"}
            ),
            422,
        ),
        (api.post("/api/leads/import", content=b""), 422),
    ]
    for response, status in cases:
        body = assert_problem(response, status)
        assert body["type"].startswith("https://") and body["title"], body
        if status == 422:
            for error in body.get("errors") or []:
                assert error["field"] and error["in"] and error["message"], error
        if status in (409, 412):
            assert body.get("conflicting"), body


def test_a_read_the_database_refuses_is_a_problem_document(live: Live, api: httpx.Client) -> None:
    """A read outside any transaction that the database refuses: translated at the one
    boundary (aicrm.db.errors.translated), answered like every other error."""
    live.db.execute("ALTER TABLE clients RENAME TO clients_gone")
    try:
        listed = api.get("/api/clients")
    finally:
        live.db.execute("ALTER TABLE clients_gone RENAME TO clients")
    body = assert_problem(listed, 500)
    assert body["type"].endswith("/internal"), body
    assert body["detail"] == (
        'The database reported an error: relation "clients" does not exist.'
    ), body
    assert api.get("/api/clients").status_code == 200
