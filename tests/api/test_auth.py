"""API keys over HTTP: 401 without a valid key, 403 outside the key's scope, revocation,
key management (admin), and last_used_at refreshed at most once a minute."""

from __future__ import annotations

import httpx

from tests.api.conftest import Live, assert_problem, unique


def test_no_key_bad_key_revoked_key_are_401(live: Live) -> None:
    anonymous = live.client(None)
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"},
                    {"Authorization": f"Bearer {live.tokens['read'][:-2]}xx"}):  # fmt: skip
        response = anonymous.get("/api/leads", headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert_problem(
            anonymous.get(f"/api/leads/{'0' * 8}-0000-4000-8000-{'0' * 12}", headers=headers), 401
        )
    assert anonymous.get("/api/ping").json() == {"ok": True}
    assert_problem(anonymous.get("/api/ping/key"), 401)
    assert live.client("read").get("/api/ping/key").json() == {"ok": True}

    name = unique("temp-")
    token = live.key(name, "write")
    assert anonymous.get("/api/leads", headers={"X-API-Key": token}).status_code == 200
    admin = live.client("admin")
    revoked = admin.delete(f"/api/keys/{name}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_problem(anonymous.get("/api/leads", headers={"X-API-Key": token}), 401)
    assert_problem(anonymous.get("/api/ping/key", headers={"X-API-Key": token}), 401)
    by_id = f"/api/leads/{'0' * 8}-0000-4000-8000-{'0' * 12}"  # the batched read by id
    assert_problem(anonymous.get(by_id, headers={"X-API-Key": token}), 401)
    assert_problem(admin.delete(f"/api/keys/{name}"), 404)


def test_scopes_are_403(live: Live, api: httpx.Client) -> None:
    lead = api.post("/api/leads", json={"first_name": "Scoped"}).json()
    reader = live.client("read")
    assert reader.get(f"/api/leads/{lead['id']}").status_code == 200
    assert reader.get("/api/leads").status_code == 200
    body = assert_problem(reader.post("/api/leads", json={"first_name": "No"}), 403)
    assert "read" in body["detail"] and "write" in body["detail"]
    assert_problem(reader.post(f"/api/leads/{lead['id']}/convert"), 403)
    assert_problem(reader.patch(f"/api/leads/{lead['id']}", json={"first_name": "No"}), 403)
    assert_problem(reader.delete(f"/api/leads/{lead['id']}"), 403)
    assert_problem(reader.post("/api/clients", json={"name": "No"}), 403)
    assert_problem(reader.post("/api/contacts/import", content=b"email\n"), 403)
    assert_problem(api.get("/api/keys"), 403)
    assert_problem(api.post("/api/keys", json={"name": "x", "scope": "read"}), 403)
    # Nothing was written by the refused requests.
    assert api.get(f"/api/leads/{lead['id']}").json()["is_converted"] is False


def test_admin_manages_keys_and_the_token_is_shown_once(live: Live) -> None:
    admin = live.client("admin")
    name = unique("bot-")
    made = admin.post("/api/keys", json={"name": name, "scope": "read"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith(f"aicrm_{made.json()['prefix']}_")
    listed = admin.get("/api/keys")
    assert listed.status_code == 200 and token not in listed.text
    assert name in [k["name"] for k in listed.json()]
    stored = live.db.scalar("SELECT key_hash FROM api_keys WHERE name = %s", (name,))
    assert token not in stored
    assert_problem(admin.post("/api/keys", json={"name": name, "scope": "read"}), 409)
    body = assert_problem(admin.post("/api/keys", json={"name": "bad name!", "scope": "read"}), 422)
    assert body["errors"][0]["field"] == "name"
    assert_problem(admin.post("/api/keys", json={"name": "ok", "scope": "root"}), 422)
    fresh = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {token}"})
    with fresh:
        assert fresh.get("/api/leads").status_code == 200
        assert_problem(fresh.post("/api/leads", json={}), 403)


def test_last_used_at_is_refreshed_at_most_once_a_minute(live: Live) -> None:
    name = unique("touch-")
    token = live.key(name, "read")
    client = live.client(None, headers={"Authorization": f"Bearer {token}"})

    def last_used():
        return live.db.scalar("SELECT last_used_at FROM api_keys WHERE name = %s", (name,))

    assert last_used() is None
    assert client.get("/api/leads").status_code == 200
    first = last_used()
    assert first is not None
    for path in ("/api/leads", "/api/ping/key", "/api/clients"):
        assert client.get(path).status_code == 200
    assert last_used() == first  # within the minute: not written again
    live.db.execute(
        "UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE name = %s", (name,)
    )
    old = last_used()
    lead = live.client("write").post("/api/leads", json={"first_name": "T"}).json()
    assert client.get(f"/api/leads/{lead['id']}").status_code == 200  # the async read path
    assert last_used() > old
