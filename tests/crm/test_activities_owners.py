"""Users and owners, assignment rules, activities and the timeline (migration 012),
against a real PostgreSQL: what the library does, and what the database enforces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import LiteralString

import psycopg
import pytest

from aicrm.crm import (
    activities,
    contacts,
    conversion,
    history,
    leads,
    merge,
    session,
    timeline,
    users,
)
from aicrm.errors import Conflict, InvalidInput, NotFound, ReadOnly
from tests.conftest import Database

ODD = "Zoë «<b>&amp;</b>» 'quote\" \\ ;DROP TABLE leads;-- 🙂 \u202e"


def test_users_are_added_listed_found_by_email_and_deactivated(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            ada = users.add_user(conn, ODD, "Ada@Example.org")
            users.add_user(conn, "Bob", "bob@example.org")
        with pytest.raises(Conflict, match="exists already"), session.transaction(conn):
            users.add_user(conn, "Ada again", "ada@EXAMPLE.org")
        with pytest.raises(InvalidInput), session.transaction(conn):
            users.add_user(conn, "  ", "x@example.org")
        assert users.get_user(conn, "ADA@example.org").name == ODD
        assert users.get_user(conn, ada.id).email == "Ada@Example.org"
        with pytest.raises(NotFound):
            users.get_user(conn, "nobody@example.org")
        with session.transaction(conn):
            gone = users.deactivate_user(conn, "bob@example.org")
        assert not gone.active
        assert [u.email for u in users.list_users(conn, include_inactive=False)] == [ada.email]
        assert len(users.list_users(conn)) == 2
    # the database refuses a second email that differs only in case, whoever writes it
    with pytest.raises(psycopg.errors.UniqueViolation):
        crm_db.execute("INSERT INTO users (name, email) VALUES ('x', 'ADA@example.ORG')")


def test_owner_explicit_filter_reassign_and_history(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn, "admin"):
            ada = users.add_user(conn, "Ada", "ada@example.org")
            bob = users.add_user(conn, "Bob", "bob@example.org")
            mine = leads.create_lead(conn, email="a@x.org", owner_id="ada@example.org")
            leads.create_lead(conn, email="b@x.org", owner_id=bob.id)
            leads.create_lead(conn, email="c@x.org")
        assert mine.owner_id == ada.id
        assert [lead.email for lead in leads.list_leads(conn, owner=ada.email).items] == ["a@x.org"]
        with session.transaction(conn, "manager"):
            moved = users.assign(conn, "leads", mine.id, "bob@example.org")
        assert moved.owner_id == bob.id
        assert {lead.email for lead in leads.list_leads(conn, owner=bob.id).items} == {
            "a@x.org",
            "b@x.org",
        }
        last = history.timeline(conn, "leads", mine.id)[-1]
        assert (last.actor, last.changes) == ("manager", {"owner_id": [str(ada.id), str(bob.id)]})
        with session.transaction(conn):
            users.deactivate_user(conn, ada.id)
        with pytest.raises(InvalidInput, match="deactivated"), session.transaction(conn):
            users.assign(conn, "leads", mine.id, ada.email)
        with pytest.raises(InvalidInput, match="No user"), session.transaction(conn):
            leads.list_leads(conn, owner="nobody@example.org")


def test_round_robin_per_source_and_for_any_source(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        # one transaction each: the turn follows the users' creation (then their ids)
        with session.transaction(conn):
            ada = users.add_user(conn, "Ada", "ada@example.org")
        with session.transaction(conn):
            bob = users.add_user(conn, "Bob", "bob@example.org")
        with session.transaction(conn):
            cy = users.add_user(conn, "Cy", "cy@example.org")
        with session.transaction(conn):
            unassigned = leads.create_lead(conn, email="n@x.org", source="web")
        assert unassigned.owner_id is None  # no rule: nobody
        with session.transaction(conn):
            users.set_rule(conn, None)  # any source: every active user in turn
            users.set_rule(conn, "partner", ["cy@example.org"])
        owners = []
        with session.transaction(conn):
            for i in range(4):
                owners.append(leads.create_lead(conn, email=f"w{i}@x.org", source="web").owner_id)
            partner = leads.create_lead(conn, email="p@x.org", source="partner")
            explicit = leads.create_lead(conn, email="e@x.org", source="web", owner_id=None)
        assert owners == [ada.id, bob.id, cy.id, ada.id]
        assert partner.owner_id == cy.id
        assert explicit.owner_id is None  # an explicit "nobody" is not overridden
        with session.transaction(conn):
            users.deactivate_user(conn, bob.id)
            nxt = [leads.create_lead(conn, email=f"v{i}@x.org").owner_id for i in range(2)]
        assert nxt == [cy.id, ada.id]  # bob is passed by
        assert [r.source for r in users.list_rules(conn)] == [None, "partner"]
        with session.transaction(conn):
            users.set_rule(conn, "partner", [bob.id])  # replaced, not added
            users.remove_rule(conn, None)
        assert [r.source for r in users.list_rules(conn)] == ["partner"]
        with session.transaction(conn):  # bob is inactive: nobody left in the rule
            assert leads.create_lead(conn, email="z@x.org", source="partner").owner_id is None
        with pytest.raises(NotFound), session.transaction(conn):
            users.remove_rule(conn, "nope")


def test_activities_add_list_complete_and_odd_text(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn, "ada-agent"):
            ada = users.add_user(conn, "Ada", "ada@example.org")
            lead = leads.create_lead(conn, email="l@x.org")
            note = activities.add_activity(
                conn, kind="note", subject=ODD, body=ODD, lead_id=lead.id,
                attributes={ODD: ODD, "n": 1},
            )  # fmt: skip
        with session.transaction(conn, "ada-agent"):
            due = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
            task = activities.add_activity(
                conn, kind="task", subject="Call back", lead_id=lead.id, due_at=due,
                assignee="ada@example.org",
            )  # fmt: skip
        assert (note.author, note.subject, note.body) == ("ada-agent", ODD, ODD)
        assert note.attributes == {ODD: ODD, "n": 1}
        page = activities.list_activities(conn, lead_id=lead.id)
        assert [a.id for a in page.items] == [task.id, note.id] and page.next_cursor is None
        first = activities.list_activities(conn, lead_id=lead.id, limit=1)
        second = activities.list_activities(
            conn, lead_id=lead.id, limit=1, cursor=first.next_cursor
        )
        assert [first.items[0].id, second.items[0].id] == [task.id, note.id]
        assert [
            a.id for a in activities.list_activities(conn, lead_id=lead.id, kind="note").items
        ] == [note.id]
        assert [t.id for t in activities.open_tasks(conn, ada.email)] == [task.id]
        with session.transaction(conn):
            done = activities.complete_task(conn, task.id)
            again = activities.complete_task(conn, task.id)
        assert done.done_at is not None and again.done_at == done.done_at
        assert activities.open_tasks(conn, ada.id) == []
        with pytest.raises(InvalidInput, match="not a task"), session.transaction(conn):
            activities.complete_task(conn, note.id)
        with pytest.raises(InvalidInput, match="exactly one"), session.transaction(conn):
            activities.add_activity(conn, kind="note", subject="x")
        with pytest.raises(InvalidInput, match="kind"), session.transaction(conn):
            activities.add_activity(conn, kind="fax", subject="x", lead_id=lead.id)
        with pytest.raises(InvalidInput, match="Only a task"), session.transaction(conn):
            activities.add_activity(
                conn, kind="call", subject="x", lead_id=lead.id, assignee=ada.email
            )
        with pytest.raises(NotFound), session.transaction(conn):
            activities.add_activity(
                conn, kind="note", subject="x", client_id="00000000-0000-0000-0000-000000000001"
            )


def test_the_database_enforces_what_an_activity_is(crm_db: Database) -> None:
    with crm_db.connect() as conn, session.transaction(conn):
        lead = leads.create_lead(conn, email="l@x.org")
    bad: list[tuple[LiteralString, tuple[object, ...]]] = [
        # two records
        (
            "INSERT INTO activities (kind, subject, lead_id, client_id) "
            "VALUES ('note', 's', %s, gen_random_uuid())",
            (lead.id,),
        ),
        # none
        ("INSERT INTO activities (kind, subject) VALUES ('note', 's')", ()),
        # an unknown kind, an empty subject, a done note, attributes not an object
        ("INSERT INTO activities (kind, subject, lead_id) VALUES ('fax', 's', %s)", (lead.id,)),
        ("INSERT INTO activities (kind, subject, lead_id) VALUES ('note', ' ', %s)", (lead.id,)),
        (
            "INSERT INTO activities (kind, subject, lead_id, done_at) "
            "VALUES ('note', 's', %s, now())",
            (lead.id,),
        ),
        (
            "INSERT INTO activities (kind, subject, lead_id, attributes) "
            "VALUES ('note', 's', %s, '[1]')",
            (lead.id,),
        ),
    ]
    for statement, params in bad:
        with pytest.raises(psycopg.errors.IntegrityError):
            crm_db.execute(statement, params)
    # the author is the actor, as the history records it
    with crm_db.connect() as conn, conn.transaction():
        conn.execute("SELECT set_config('aicrm.actor', 'psql-user', true)")
        conn.execute(
            "INSERT INTO activities (kind, subject, lead_id) VALUES ('call', 's', %s)", (lead.id,)
        )
    assert crm_db.scalar("SELECT author FROM activities") == "psql-user"


def test_conversion_moves_activities_and_carries_the_owner(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            ada = users.add_user(conn, "Ada", "ada@example.org")
            lead = leads.create_lead(conn, email="l@x.org", company_name="Acme", owner_id=ada.id)
            act = activities.add_activity(conn, kind="call", subject="Intro", lead_id=lead.id)
            other = leads.create_lead(conn, email="o@x.org", owner_id=ada.id)
            activities.add_activity(conn, kind="note", subject="n", lead_id=other.id)
        result = conversion.convert_lead(conn, lead.id)
        moved = activities.get_activity(conn, act.id)
        assert (moved.lead_id, moved.client_id) == (None, result.client_id)
        client_owner = crm_db.scalar(
            "SELECT owner_id FROM clients WHERE id = %s", (result.client_id,)
        )
        assert client_owner == ada.id
        # a converted lead's owner is read-only like its other fields
        with pytest.raises(ReadOnly), session.transaction(conn):
            users.assign(conn, "leads", lead.id, None)
        # the bulk conversion moves them too, in its one transaction
        conn.commit()  # the reads above opened one
        bulk = conversion.convert_leads(conn, [other.id])
        target = bulk.converted[other.id]
        assert crm_db.scalar("SELECT count(*) FROM activities WHERE client_id = %s", (target,)) == 1
        assert crm_db.scalar("SELECT owner_id FROM clients WHERE id = %s", (target,)) == ada.id


def test_a_refused_conversion_moves_nothing(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            lead = leads.create_lead(conn, email="d@x.org")
            leads.create_lead(conn, email="D@x.org", allow_duplicate=True)
            act = activities.add_activity(conn, kind="note", subject="n", lead_id=lead.id)
        with pytest.raises(Conflict):
            conversion.convert_lead(conn, lead.id)
        assert activities.get_activity(conn, act.id).lead_id == lead.id


def test_merge_moves_activities_to_the_kept_lead_and_delete_removes_them(
    crm_db: Database,
) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            ada = users.add_user(conn, "Ada", "ada@example.org")
            kept = leads.create_lead(conn, email="k@x.org")
            gone = leads.create_lead(conn, first_name="Dup", owner_id=ada.id)
            act = activities.add_activity(conn, kind="email", subject="Hi", lead_id=gone.id)
            contact = contacts.create_contact(conn, lead_id=gone.id, email="c@x.org")
            on_contact = activities.add_activity(
                conn, kind="note", subject="c", contact_id=contact.id
            )
        result = merge.merge_leads(conn, kept.id, [gone.id])
        assert result.kept.owner_id == ada.id  # an empty owner is filled like other fields
        assert activities.get_activity(conn, act.id).lead_id == kept.id
        assert activities.get_activity(conn, on_contact.id).contact_id == contact.id
        with session.transaction(conn):
            doomed = leads.create_lead(conn, email="doomed@x.org")
            dropped = activities.add_activity(conn, kind="note", subject="d", lead_id=doomed.id)
        with session.transaction(conn):
            leads.delete_lead(conn, doomed.id)
        with pytest.raises(NotFound):
            activities.get_activity(conn, dropped.id)


def test_timeline_interleaves_activities_and_history_newest_first(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn, "alice"):
            lead = leads.create_lead(conn, email="t@x.org")
        with session.transaction(conn, "bob"):
            activities.add_activity(conn, kind="note", subject="first", lead_id=lead.id)
        with session.transaction(conn, "carol"):
            leads.update_lead(conn, lead.id, {"status": "contacted"})
        with session.transaction(conn, "dave"):
            activities.add_activity(conn, kind="call", subject="second", lead_id=lead.id)
        page = timeline.timeline(conn, "leads", lead.id)
        assert [(e.kind, e.actor) for e in page.items] == [
            ("activity", "dave"),
            ("history", "carol"),
            ("activity", "bob"),
            ("history", "alice"),
        ]
        assert page.items[1].to_dict()["changes"] == {"status": ["new", "contacted"]}
        assert page.items[0].to_dict()["activity"]["subject"] == "second"
        seen = []
        cursor = None
        while True:
            part = timeline.timeline(conn, "leads", lead.id, cursor=cursor, limit=1)
            seen += [(e.kind, e.id) for e in part.items]
            cursor = part.next_cursor
            if cursor is None:
                break
        assert seen == [(e.kind, e.id) for e in page.items]
        with pytest.raises(NotFound):
            timeline.timeline(conn, "clients", lead.id)
        with pytest.raises(InvalidInput):
            timeline.timeline(conn, "leads", lead.id, cursor="bm90IGEgY3Vyc29y")
        with pytest.raises(InvalidInput):
            timeline.timeline(conn, "contacts", lead.id)


def test_timeline_pages_hold_when_entries_share_a_moment(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):  # one transaction: one now() for all of them
            lead = leads.create_lead(conn, email="same@x.org")
            for i in range(5):
                activities.add_activity(conn, kind="note", subject=f"n{i}", lead_id=lead.id)
        everything = timeline.timeline(conn, "leads", lead.id, limit=100).items
        assert len(everything) == 6 and len({e.at for e in everything}) == 1
        seen = []
        cursor = None
        for _ in range(10):
            part = timeline.timeline(conn, "leads", lead.id, cursor=cursor, limit=2)
            seen += [e.id for e in part.items]
            cursor = part.next_cursor
            if cursor is None:
                break
        assert seen == [e.id for e in everything]


def test_open_tasks_order_by_due_date_without_due_date_last(crm_db: Database) -> None:
    now = datetime.now(UTC)
    with crm_db.connect() as conn:
        with session.transaction(conn):
            ada = users.add_user(conn, "Ada", "ada@example.org")
            lead = leads.create_lead(conn, email="l@x.org")
            later = activities.add_activity(
                conn, kind="task", subject="later", lead_id=lead.id, assignee=ada.id,
                due_at=now + timedelta(days=3),
            )  # fmt: skip
            undated = activities.add_activity(
                conn, kind="task", subject="whenever", lead_id=lead.id, assignee=ada.id
            )
            soon = activities.add_activity(
                conn, kind="task", subject="soon", lead_id=lead.id, assignee=ada.id,
                due_at=now + timedelta(hours=1),
            )  # fmt: skip
            activities.add_activity(conn, kind="task", subject="unassigned", lead_id=lead.id)
        assert [t.id for t in activities.open_tasks(conn, ada.email)] == [
            soon.id,
            later.id,
            undated.id,
        ]
