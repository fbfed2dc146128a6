"""The dashboard's write forms in-process: create and edit leads (duplicates, stale
edits), log activities, complete tasks, reassign; scopes and the Origin check."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st
from markupsafe import escape

from aicrm.crm import session, users
from tests.web.conftest import Crm, sign_in

ODD = 'Zoë "Z" O\'Neil <script>alert(1)</script> & ‮rtl  two  spaces 🙂'


def shown(text: str) -> str:
    """``text`` as the templates write it (Jinja's escaping)."""
    return str(escape(text))


def version(page: str) -> str:
    found = re.search(r'name="version" value="([^"]+)"', page)
    assert found, "no version in the form"
    return html.unescape(found.group(1))


def add_user(crm: Crm, name: str, email: str) -> str:
    with crm.db.connect() as conn, session.transaction(conn, "setup"):
        return str(users.add_user(conn, name, email).id)


def test_creating_a_lead_keeps_odd_text_exactly_and_asks_again_for_a_duplicate(
    client: TestClient, crm: Crm
) -> None:
    sign_in(client, crm.data.write_token)
    assert 'href="/leads/new"' in client.get("/leads").text
    form = client.get("/leads/new")
    assert form.status_code == 200 and 'name="first_name"' in form.text
    fields = {"first_name": ODD, "last_name": " trailing ", "email": "zoe@new.example",
              "company_name": ODD, "source": "dashboard", "status": "contacted",
              "owner": ""}  # fmt: skip
    made = client.post("/leads/new", data=fields)
    assert made.status_code == 303, made.text
    lead_id = made.headers["location"].rsplit("/", 1)[-1]
    row = crm.db.execute(
        "SELECT first_name, last_name, company_name, status, owner_id FROM leads WHERE id = %s",
        (lead_id,),
    )
    assert row == [(ODD, " trailing ", ODD, "contacted", None)]
    page = client.get(f"/leads/{lead_id}").text
    assert shown(ODD) in page and "<script>alert" not in page
    actor = crm.db.scalar("SELECT actor FROM crm_history WHERE row_id = %s", (lead_id,))
    assert actor == "maria.sales"

    hopper = crm.data.leads["Hopper"]
    twin = fields | {"email": str(hopper.email).upper(), "first_name": "Grace"}
    asked = client.post("/leads/new", data=twin)
    assert asked.status_code == 409 and 'id="duplicates"' in asked.text
    assert f'href="/leads/{hopper.id}"' in asked.text and "Save anyway" in asked.text
    assert 'name="allow_duplicate" value="true"' in asked.text
    assert shown(ODD) in asked.text  # what was typed is still in the form
    assert crm.db.scalar("SELECT count(*) FROM leads WHERE first_name = 'Grace'") == 1
    anyway = client.post("/leads/new", data=twin | {"allow_duplicate": "true"})
    assert anyway.status_code == 303
    assert crm.db.scalar("SELECT count(*) FROM leads WHERE first_name = 'Grace'") == 2

    bad = client.post("/leads/new", data=fields | {"email": "not an email"})
    assert bad.status_code == 422 and 'id="form-error"' in bad.text
    assert "not a valid email address" in bad.text and shown(ODD) in bad.text


def test_editing_saves_only_what_changed_and_refuses_a_stale_form(
    client: TestClient, crm: Crm
) -> None:
    sign_in(client, crm.data.write_token)
    lead = crm.data.leads["Lovelace"]
    page = client.get(f"/leads/{lead.id}")
    assert f'href="/leads/{lead.id}/edit"' in page.text
    form = client.get(f"/leads/{lead.id}/edit")
    assert form.status_code == 200 and shown(str(lead.email)) in form.text
    fields = {"version": version(form.text), "first_name": str(lead.first_name),
              "last_name": str(lead.last_name), "email": str(lead.email),
              "company_name": ODD, "source": "", "status": "contacted",
              "owner": str(lead.owner_id or "")}  # fmt: skip
    saved = client.post(f"/leads/{lead.id}/edit", data=fields)
    assert saved.status_code == 303 and saved.headers["location"] == f"/leads/{lead.id}"
    row = crm.db.execute("SELECT company_name, source, status FROM leads WHERE id = %s", (lead.id,))
    assert row == [(ODD, None, "contacted")]
    changes = crm.db.scalar(
        "SELECT changes FROM crm_history WHERE row_id = %s ORDER BY id DESC LIMIT 1", (lead.id,)
    )
    assert set(changes) == {"company_name", "source", "status"}

    stale = client.post(f"/leads/{lead.id}/edit", data=fields | {"status": "qualified"})
    assert stale.status_code == 409 and 'id="stale"' in stale.text
    assert crm.db.scalar("SELECT status FROM leads WHERE id = %s", (lead.id,)) == "contacted"
    again = client.post(
        f"/leads/{lead.id}/edit",
        data=fields | {"status": "qualified", "version": version(stale.text)},
    )
    assert again.status_code == 303
    assert crm.db.scalar("SELECT status FROM leads WHERE id = %s", (lead.id,)) == "qualified"

    hopper = crm.data.leads["Hopper"]
    fresh = client.get(f"/leads/{lead.id}/edit").text
    taken = fields | {"version": version(fresh), "email": str(hopper.email), "status": "qualified"}
    asked = client.post(f"/leads/{lead.id}/edit", data=taken)
    assert asked.status_code == 409 and 'id="duplicates"' in asked.text
    converted = crm.data.leads["Turing"]
    refused = client.post(f"/leads/{converted.id}/edit", data={"status": "lost"})
    assert refused.status_code == 409 and "read-only" in refused.text


def test_activities_tasks_and_reassigning_from_the_lead_page(client: TestClient, crm: Crm) -> None:
    ada = add_user(crm, "Ada Seller", "ada@example.com")
    bob = add_user(crm, "Bob Seller", "bob@example.com")
    sign_in(client, crm.data.write_token)
    lead = crm.data.leads["Hopper"]
    page = client.get(f"/leads/{lead.id}").text
    assert 'id="work"' in page and "Book demo" in page and "Ada Seller" in page

    logged = client.post(f"/leads/{lead.id}/activities", data={
        "kind": "call", "subject": ODD, "body": "line one\r\nline two", "due_at": "",
        "assignee": "",
    })  # fmt: skip
    assert logged.status_code == 303 and logged.headers["location"] == f"/leads/{lead.id}#work"
    assert crm.db.execute(
        "SELECT subject, body, author FROM activities WHERE kind = 'call' AND lead_id = %s",
        (lead.id,),
    ) == [(ODD, "line one\nline two", "maria.sales")]
    task = client.post(f"/leads/{lead.id}/activities", data={
        "kind": "task", "subject": "Send the quote", "body": "", "due_at": "2026-12-24T09:30",
        "assignee": ada,
    })  # fmt: skip
    assert task.status_code == 303
    task_id = str(crm.db.scalar("SELECT id FROM activities WHERE subject = 'Send the quote'"))
    page = client.get(f"/leads/{lead.id}").text
    assert "Send the quote" in page and f'action="/activities/{task_id}/done"' in page
    due = crm.db.scalar("SELECT to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') "
                        "FROM activities WHERE id = %s", (task_id,))  # fmt: skip
    assert due == "2026-12-24 09:30"  # the form's time is UTC

    wrong = client.post(f"/leads/{lead.id}/activities", data={
        "kind": "note", "subject": "x", "body": "", "due_at": "2026-12-24T09:30", "assignee": "",
    })  # fmt: skip
    assert wrong.status_code == 422 and "Only a task" in wrong.text

    done = client.post(f"/activities/{task_id}/done", data={"next": f"/leads/{lead.id}#work"})
    assert done.status_code == 303 and done.headers["location"] == f"/leads/{lead.id}#work"
    assert crm.db.scalar("SELECT done_at IS NOT NULL FROM activities WHERE id = %s", (task_id,))
    assert f'action="/activities/{task_id}/done"' not in client.get(f"/leads/{lead.id}").text

    moved = client.post(f"/leads/{lead.id}/owner", data={"owner": bob})
    assert moved.status_code == 303
    assert str(crm.db.scalar("SELECT owner_id FROM leads WHERE id = %s", (lead.id,))) == bob
    page = client.get(f"/leads/{lead.id}").text
    assert re.search(r'id="owner-name">Bob Seller<', page)
    client_id = crm.db.scalar("SELECT converted_to_client_id FROM leads WHERE is_converted LIMIT 1")
    assert client.post(f"/clients/{client_id}/owner", data={"owner": ada}).status_code == 303
    assert str(crm.db.scalar("SELECT owner_id FROM clients WHERE id = %s", (client_id,))) == ada
    off = client.post(f"/contacts/{client_id}/owner", data={"owner": ada})
    assert off.status_code == 422


def test_a_read_key_sees_no_forms_and_cannot_post_them(client: TestClient, crm: Crm) -> None:
    sign_in(client, crm.data.read_token)
    lead = crm.data.leads["Hopper"]
    page = client.get(f"/leads/{lead.id}").text
    assert "/edit" not in page and 'action="/leads/' not in page.replace("/convert", "")
    assert 'href="/leads/new"' not in client.get("/leads").text
    before = crm.db.scalar("SELECT md5(string_agg(l::text, '' ORDER BY id)) FROM leads l")
    logged = crm.db.scalar("SELECT count(*) FROM activities")
    for path, data in [
        ("/leads/new", {"first_name": "X"}),
        (f"/leads/{lead.id}/edit", {"status": "lost"}),
        (f"/leads/{lead.id}/activities", {"kind": "note", "subject": "x"}),
        (f"/leads/{lead.id}/owner", {"owner": ""}),
    ]:
        answer = client.post(path, data=data)
        assert answer.status_code == 403 and "scope" in answer.text, path
    assert client.get("/leads/new").status_code == 403
    after = crm.db.scalar("SELECT md5(string_agg(l::text, '' ORDER BY id)) FROM leads l")
    assert after == before and crm.db.scalar("SELECT count(*) FROM activities") == logged


def test_forms_posted_from_another_site_are_refused(client: TestClient, crm: Crm) -> None:
    sign_in(client, crm.data.write_token)
    lead = crm.data.leads["Hopper"]
    evil = {"Origin": "https://evil.example"}
    logged = crm.db.scalar("SELECT count(*) FROM activities")
    for path, data in [
        ("/leads/new", {"first_name": "Evil"}),
        (f"/leads/{lead.id}/edit", {"status": "lost"}),
        (f"/leads/{lead.id}/activities", {"kind": "note", "subject": "evil"}),
        (f"/leads/{lead.id}/owner", {"owner": ""}),
    ]:
        answer = client.post(path, data=data, headers=evil)
        assert answer.status_code == 403 and "another site" in answer.text, path
    assert crm.db.scalar("SELECT count(*) FROM leads WHERE first_name = 'Evil'") == 0
    assert crm.db.scalar("SELECT count(*) FROM activities") == logged


TEXT = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)


def field_value(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" type="text" value="([^"]*)"', page)
    assert found, f"no {name} in the form"
    return html.unescape(found.group(1))


@pytest.mark.slow
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=TEXT, company=TEXT)
def test_any_text_round_trips_through_the_forms(
    client: TestClient, crm: Crm, first: str, company: str
) -> None:
    sign_in(client, crm.data.write_token)
    made = client.post("/leads/new", data={"first_name": first, "company_name": "x", "owner": ""})
    assert made.status_code == 303, made.text
    lead_id = made.headers["location"].rsplit("/", 1)[-1]
    form = client.get(f"/leads/{lead_id}/edit")
    assert form.status_code == 200
    assert field_value(form.text, "first_name") == first
    fields = {"version": version(form.text), "first_name": first, "company_name": company,
              "status": "new", "owner": ""}  # fmt: skip
    saved = client.post(f"/leads/{lead_id}/edit", data=fields)
    assert saved.status_code == 303, saved.text
    stored = crm.db.execute("SELECT first_name, company_name FROM leads WHERE id = %s", (lead_id,))
    assert stored == [(first, company)]
    again = client.get(f"/leads/{lead_id}/edit").text
    assert field_value(again, "company_name") == company
    assert client.get(f"/leads/{lead_id}").status_code == 200


def test_my_tasks_has_a_done_button_for_a_write_key(client: TestClient, crm: Crm) -> None:
    from aicrm import apikeys

    lead = crm.data.leads["Hopper"]
    with crm.db.connect() as conn, session.transaction(conn, "setup"):
        ada = users.add_user(conn, "Ada Seller", "ada@example.com")
        _, token = apikeys.create_key(conn, "ada", "write", ada.id)
    sign_in(client, token)
    logged = client.post(f"/leads/{lead.id}/activities", data={
        "kind": "task", "subject": "Follow up", "body": "", "due_at": "", "assignee": str(ada.id),
    })  # fmt: skip
    assert logged.status_code == 303, logged.text
    task_id = str(crm.db.scalar("SELECT id FROM activities WHERE subject = 'Follow up'"))
    mine = client.get("/tasks").text
    assert "Follow up" in mine and f'action="/activities/{task_id}/done"' in mine
    done = client.post(f"/activities/{task_id}/done", data={"next": "/tasks"})
    assert done.status_code == 303 and done.headers["location"] == "/tasks"
    assert "Follow up" not in client.get("/tasks").text
    off_site = client.post(f"/activities/{task_id}/done", data={"next": "//evil.example/"})
    assert off_site.headers["location"] == "/leads"
