"""The timeline over the API (aicrm.api._timelines): the page PostgreSQL writes is the
library's page, member for member and in the same order, cursors included, whatever
the text and the moments; the key is checked first (401), then the record (404), then
the cursor (422); what is not plainly valid falls through to the documented route."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from starlette.routing import Match

from aicrm import apikeys
from aicrm.api import _timelines as timelines
from aicrm.api.routes._common import page_response
from aicrm.crm import timeline
from tests.api.conftest import Live, assert_problem, unique

# Quotes, backslashes, unicode (astral, right-to-left, combining, separators), and
# every kind of control character but NUL (PostgreSQL's text has none).
ODD = (
    'Zoë «<b>&amp;</b>» \'q" \\ \\" \\\\n 🙂 \u202e e\u0301 \u2028\u2029 '
    + "".join(chr(c) for c in range(1, 32))
    + "\x7f end"
)
# Moments with no fraction, a fraction with trailing zeros, and all six digits: the
# API writes them as the library (Python's isoformat) does.
MOMENTS = (
    "2025-03-01 10:00:00+00",
    "2025-03-01 10:00:00.5+00",
    "2025-03-01 10:00:00.120000+00",
    "2025-03-01 10:00:00.123456+00",
    "2025-03-01 09:59:59.000001+00",
)


def canonical(body: bytes) -> str:
    """A JSON document with its members in the order they came: equal documents, in
    equal order, give equal text (whitespace and escapes aside)."""
    return json.dumps(json.loads(body), ensure_ascii=False)


def library_page(live: Live, table: str, record: str, limit: int, cursor: str | None) -> bytes:
    with live.db.connect() as conn:
        page = timeline.timeline(conn, table, record, cursor=cursor, limit=limit)
    return bytes(page_response(page).body)


def odd_lead(live: Live, api: httpx.Client) -> str:
    """A lead with odd text in its activities and its history, and moments of every
    shape, activities and history sharing some (the order's ties)."""
    lead: str = api.post("/api/leads", json={"email": f"{unique()}@x.org"}).json()["id"]
    for kind in ("note", "call"):
        made = api.post(
            "/api/activities",
            json={
                "kind": kind, "subject": ODD, "body": ODD, "lead_id": lead,
                "attributes": {ODD: [ODD, 1.5, 10, None, True, {"n": 0.1}]},
            },
        )  # fmt: skip
        assert made.status_code == 201, made.text
    changed = api.patch(f"/api/leads/{lead}", json={"first_name": ODD, "company_name": ODD})
    assert changed.status_code == 200, changed.text
    with live.db.connect() as conn:
        for moment in MOMENTS:
            conn.execute(
                "INSERT INTO activities (kind, subject, body, lead_id, author, created_at) "
                "VALUES ('note', %s, %s, %s, 'test', %s)",
                (ODD, ODD, lead, moment),
            )
            conn.execute(
                "INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, "
                "changes) VALUES ('leads', %s, 'update', %s, 'test', %s)",
                (lead, moment, json.dumps({"notes": [ODD, moment]})),
            )
        conn.commit()
    return lead


def test_pages_are_the_librarys_member_for_member(live: Live, api: httpx.Client) -> None:
    lead = odd_lead(live, api)
    reader = live.client("read")
    for limit in (3, 500):
        cursor, seen = None, 0
        while True:
            params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
            answer = reader.get(f"/api/leads/{lead}/timeline", params=params)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "application/json"
            expected = library_page(live, "leads", lead, limit, cursor)
            assert canonical(answer.content) == canonical(expected)
            page = answer.json()
            seen += len(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == 2 + 1 + 1 + 2 * len(MOMENTS)  # the insert's history too
    items = reader.get(f"/api/leads/{lead}/timeline?limit=500").json()["items"]
    ats = {item["at"] for item in items}
    assert {"2025-03-01T10:00:00+00:00", "2025-03-01T10:00:00.500000+00:00"} <= ats
    assert any(item.get("activity", {}).get("subject") == ODD for item in items)
    assert any(ODD in (item.get("changes") or {}).get("first_name", []) for item in items)


def test_a_clients_timeline_and_an_empty_one(live: Live, api: httpx.Client) -> None:
    client = api.post("/api/clients", json={"name": ODD}).json()["id"]
    api.post("/api/activities", json={"kind": "note", "subject": ODD, "client_id": client})
    reader = live.client("read")
    for limit in (1, 50):
        answer = reader.get(f"/api/clients/{client}/timeline?limit={limit}")
        assert answer.status_code == 200, answer.text
        assert canonical(answer.content) == canonical(
            library_page(live, "clients", client, limit, None)
        )
    with live.db.connect() as conn:
        conn.execute("DELETE FROM crm_history WHERE row_id = %s", (client,))
        conn.execute("DELETE FROM activities WHERE client_id = %s", (client,))
        conn.commit()
    empty = reader.get(f"/api/clients/{client}/timeline")
    assert empty.status_code == 200 and empty.json() == {"items": [], "next_cursor": None}


def test_the_key_first_then_the_record_then_the_cursor(live: Live, api: httpx.Client) -> None:
    lead = api.post("/api/leads", json={"email": f"{unique()}@x.org"}).json()["id"]
    path = f"/api/leads/{lead}/timeline"
    missing = f"/api/leads/{uuid.uuid4()}/timeline"
    token = live.tokens["read"]
    wrong = f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}"
    # Seven refusals: the sign-in throttle answers 429 from the tenth on.
    for headers, url in (
        ({}, path),
        ({}, missing + "?cursor=bad"),
        ({"Authorization": "Bearer nonsense"}, path),
        ({"Authorization": wrong}, path),
        ({"Authorization": wrong}, missing + "?cursor=bad"),
        ({"Authorization": "Bearer aicrm_0000000000_" + "x" * 32}, path),
    ):
        assert_problem(httpx.get(live.url + url, headers=headers), 401)
    name = unique("gone")
    revoked = live.key(name, "admin")
    with live.db.connect() as conn:
        apikeys.revoke_key(conn, name)
        conn.commit()
    gone = {"X-API-Key": revoked}
    assert_problem(httpx.get(live.url + path, headers=gone), 401)
    reader = live.client("read")
    assert_problem(reader.get(missing), 404)
    assert_problem(reader.get(missing + "?cursor=bad"), 404)  # the library's order
    body = assert_problem(reader.get(path + "?cursor=bad"), 422)
    assert "cursor" in body["detail"]
    forged = "WyIyMDI1LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgInNwb29reSIsICJ4Il0"  # kind "spooky"
    assert_problem(reader.get(path, params={"cursor": forged}), 422)
    # Read is the narrowest scope: every live key may read a timeline (no 403 to see).
    for scope in apikeys.SCOPES:
        assert live.client(scope).get(path).status_code == 200


def test_the_key_is_touched_as_a_read_by_id_touches_it(live: Live, api: httpx.Client) -> None:
    lead = api.post("/api/leads", json={"email": f"{unique()}@x.org"}).json()["id"]
    name = unique("touch")
    token = live.key(name, "read")
    used = "SELECT last_used_at FROM api_keys WHERE name = %s"
    assert live.db.scalar(used, (name,)) is None
    answer = httpx.get(f"{live.url}/api/leads/{lead}/timeline", headers={"X-API-Key": token})
    assert answer.status_code == 200, answer.text
    assert live.db.scalar(used, (name,)) is not None


def test_what_is_not_plainly_valid_falls_through_to_the_documented_route(
    live: Live, api: httpx.Client
) -> None:
    lead = api.post("/api/leads", json={"email": f"{unique()}@x.org"}).json()["id"]
    api.post("/api/activities", json={"kind": "note", "subject": "a", "lead_id": lead})
    reader = live.client("read")
    path = f"/api/leads/{lead}/timeline"
    for query in ("limit=0", "limit=501", "limit=x", "limit=-1", "cursor=" + "a" * 301):
        assert_problem(reader.get(f"{path}?{query}"), 422)
    assert_problem(reader.get("/api/leads/not-a-uuid/timeline"), 422)
    fast = reader.get(f"{path}?limit=1")
    assert fast.status_code == 200
    # An unknown parameter, a repeated one, a leading zero: FastAPI's route answers,
    # through the same function, with the same page.
    for query in ("limit=1&other=x", "limit=5&limit=1", "limit=01"):
        answer = reader.get(f"{path}?{query}")
        assert answer.status_code == 200, (query, answer.text)
        assert answer.content == fast.content, query
    assert reader.get(path.upper().replace("/API/LEADS/", "/api/leads/").replace(
        "/TIMELINE", "/timeline"
    )).content == reader.get(path).content  # fmt: skip


def test_a_refused_key_never_computes_the_page(live: Live, api: httpx.Client) -> None:
    lead = api.post("/api/leads", json={"email": f"{unique()}@x.org"}).json()["id"]
    params = timeline.parameters("leads", uuid.UUID(lead), None, 50)
    prefix = apikeys.TOKEN.match(live.tokens["read"])
    assert prefix is not None
    params |= {"prefix": prefix.group(1), "digest": "not the hash"}
    explain = b"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, FORMAT JSON) "
    with live.db.connect() as conn:
        row = conn.execute(explain + timelines.statement("leads"), params).fetchone()
        refused = json.dumps(row)
        params["digest"] = apikeys.digest(live.tokens["read"])
        row = conn.execute(explain + timelines.statement("leads"), params).fetchone()
        accepted = json.dumps(row)
    assert '"activities_lead_idx"' in accepted or '"activities"' in accepted
    assert '"Actual Loops": 0' in refused and '"Actual Loops": 0' not in accepted


def test_the_plain_route_takes_only_plain_query_strings(live: Live) -> None:
    plain = [r for r in live.app.router.routes if isinstance(r, timelines.PlainRoute)]
    assert [r.path for r in plain] == [
        "/api/leads/{record_id:uuid}/timeline",
        "/api/clients/{record_id:uuid}/timeline",
    ]
    path = f"/api/leads/{uuid.uuid4()}/timeline"

    def match(query: bytes, where: str = path) -> tuple[Match, Any]:
        scope = {"type": "http", "method": "GET", "path": where, "query_string": query}
        found, child = plain[0].matches(scope)
        return found, child.get("aicrm.query")

    assert match(b"") == (Match.FULL, (50, None))
    assert match(b"limit=500&cursor=abc%3D") == (Match.FULL, (500, "abc="))
    assert match(b"cursor=" + b"a" * 300) == (Match.FULL, (50, "a" * 300))
    for refused in (
        b"limit=501", b"limit=0", b"limit=01", b"limit=1e2", b"limit=", b"cursor=",
        b"cursor=" + b"a" * 301, b"limit=1&limit=2", b"other=1", b"limit=1&" + b"x" * 400,
    ):  # fmt: skip
        assert match(refused)[0] is Match.NONE, refused
    assert match(b"", "/api/leads/nope/timeline")[0] is Match.NONE
