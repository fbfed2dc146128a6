"""/api/assignment-rules over real HTTP (issue #17): who may read and change the rules,
create or replace, removal, and that a rule set over the API assigns new leads."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Live, assert_problem, unique
from tests.api.test_activities import make_lead, make_user


def test_reading_needs_read_and_changing_needs_admin(live: Live) -> None:
    source = unique("src")
    for scope in ("read", "write"):
        refused = live.client(scope).post("/api/assignment-rules", json={"source": source})
        assert_problem(refused, 403)
        assert_problem(live.client(scope).delete("/api/assignment-rules/1"), 403)
    assert_problem(live.client(None).get("/api/assignment-rules"), 401)
    made = live.client("admin").post("/api/assignment-rules", json={"source": source})
    assert made.status_code == 201, made.text
    rule: dict[str, Any] = made.json()
    assert made.headers["Location"] == f"/api/assignment-rules/{rule['id']}"
    assert rule["source"] == source and rule["user_ids"] == [] and rule["last_user_id"] is None
    assert rule in live.client("read").get("/api/assignment-rules").json()


def test_a_rule_set_over_the_api_deals_new_leads_in_turn(live: Live) -> None:
    admin, api = live.client("admin"), live.client("write")
    ada, bob = make_user(live, "Ada"), make_user(live, "Bob")
    source = unique("partner")
    first = admin.post("/api/assignment-rules", json={"source": source, "users": [ada["email"]]})
    assert first.status_code == 201, first.text
    # Posting the same source again replaces the rule's users (200), not a second rule.
    replaced = admin.post(
        "/api/assignment-rules", json={"source": source, "users": [ada["id"], bob["email"]]}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["id"] == first.json()["id"]
    assert replaced.json()["user_ids"] == [ada["id"], bob["id"]]
    owners = [make_lead(api, source=source)["owner_id"] for _ in range(4)]
    assert owners == [ada["id"], bob["id"], ada["id"], bob["id"]]
    listed = live.client("read").get("/api/assignment-rules").json()
    mine = next(r for r in listed if r["source"] == source)
    assert mine["last_user_id"] == bob["id"]
    # An explicit owner wins over the rule, and does not move its turn.
    assert make_lead(api, source=source, owner_id=bob["id"])["owner_id"] == bob["id"]
    assert make_lead(api, source=source)["owner_id"] == ada["id"]
    gone = admin.delete(f"/api/assignment-rules/{mine['id']}")
    assert gone.status_code == 204 and gone.content == b""
    assert make_lead(api, source=source)["owner_id"] is None
    assert_problem(admin.delete(f"/api/assignment-rules/{mine['id']}"), 404)


def test_unknown_users_and_bad_bodies_are_invalid_input(live: Live) -> None:
    admin = live.client("admin")
    source = unique("src")
    unknown = admin.post(
        "/api/assignment-rules", json={"source": source, "users": ["nobody@x.org"]}
    )
    assert_problem(unknown, 422)
    assert "nobody@x.org" in unknown.json()["detail"]
    for body in ({"source": "  "}, {"source": source, "users": [""]}, {"extra": 1}):
        assert_problem(admin.post("/api/assignment-rules", json=body), 422)
    assert_problem(admin.delete("/api/assignment-rules/0"), 422)
    assert source not in {r["source"] for r in admin.get("/api/assignment-rules").json()}
