"""Leads, clients and contacts through the library: create, read, update, list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aicrm.crm import clients, contacts, leads, session
from aicrm.crm.store import Query
from aicrm.errors import DuplicateFound, InvalidInput, NotFound, Stale
from tests.conftest import Database


def test_create_and_read_a_lead(crm_db: Database) -> None:
    with crm_db.connect() as conn, session.transaction(conn, "tester"):
        lead = leads.create_lead(
            conn,
            first_name="Ada",
            last_name="Lovelace",
            email="ada@engine.io",
            company_name="Analytical",
            source="web",
            attributes={"plan": "pro"},
        )
        again = leads.get_lead(conn, str(lead.id))
    assert again == lead
    assert lead.status == "new" and lead.is_converted is False
    assert lead.attributes == {"plan": "pro"} and lead.ai_annotations == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"email": "not-an-email"}, "not a valid email"),
        ({"status": "won"}, "not a lead status"),
        ({"status": "converted"}, "only by converting"),
        ({"colour": "blue"}, "Unknown or read-only lead field"),
        ({"attributes": ["a"]}, "must be a JSON object"),
    ],
)
def test_bad_lead_values_are_refused(crm_db: Database, values: dict, message: str) -> None:
    with crm_db.connect() as conn:
        with pytest.raises(InvalidInput, match=message), session.transaction(conn):
            leads.create_lead(conn, **values)
        assert crm_db.scalar("SELECT count(*) FROM leads") == 0


def test_unknown_and_malformed_ids(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with pytest.raises(NotFound):
            leads.get_lead(conn, "00000000-0000-0000-0000-000000000000")
        with pytest.raises(InvalidInput, match="not a valid lead id"):
            leads.get_lead(conn, "lead-42")


def test_duplicate_email_is_refused_case_insensitively_unless_allowed(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            first = leads.create_lead(conn, email="Sam@Example.com")
        with pytest.raises(DuplicateFound) as caught, session.transaction(conn):
            leads.create_lead(conn, email="sam@example.COM")
        assert str(first.id) in caught.value.message
        assert caught.value.details["conflicting"][0]["id"] == str(first.id)
        with session.transaction(conn):
            leads.create_lead(conn, email="sam@example.com", allow_duplicate=True)
        # A contact's email counts too.
        with session.transaction(conn):
            client = clients.create_client(conn, name="Acme")
            contacts.create_contact(conn, client_id=client.id, email="pat@acme.com")
        with pytest.raises(DuplicateFound, match="contact"), session.transaction(conn):
            leads.create_lead(conn, email="PAT@acme.com")
    assert crm_db.scalar("SELECT count(*) FROM leads") == 2


def test_update_and_stale_update(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            lead = leads.create_lead(conn, email="u@x.org")
        with session.transaction(conn):
            changed = leads.update_lead(
                conn, lead.id, {"status": "contacted"}, expected_updated_at=lead.updated_at
            )
        assert changed.status == "contacted" and changed.updated_at >= lead.updated_at
        with pytest.raises(Stale), session.transaction(conn):
            leads.update_lead(
                conn,
                lead.id,
                {"status": "qualified"},
                expected_updated_at=lead.updated_at - timedelta(seconds=1),
            )
        assert leads.get_lead(conn, lead.id).status == "contacted"


def test_list_filters_search_and_cursor_pagination(crm_db: Database) -> None:
    crm_db.execute(
        "INSERT INTO leads (first_name, email, company_name, source, status, attributes, "
        "created_at) SELECT 'n' || i, 'p' || i || '@' || (CASE WHEN i % 2 = 0 THEN 'even.io' "
        "ELSE 'odd.org' END), 'Co ' || i, CASE WHEN i % 3 = 0 THEN 'web' ELSE 'referral' END, "
        "CASE WHEN i % 5 = 0 THEN 'qualified' ELSE 'new' END, "
        "jsonb_build_object('tier', CASE WHEN i % 4 = 0 THEN 'gold' ELSE 'basic' END), "
        "timestamptz '2026-01-01' + i * interval '1 hour' FROM generate_series(1, 120) i"
    )
    with crm_db.connect() as conn:
        seen: list = []
        page = leads.list_leads(conn, query=Query(limit=50))
        while True:
            seen.extend(page.items)
            if page.next_cursor is None:
                break
            page = leads.list_leads(conn, query=Query(limit=50, cursor=page.next_cursor))
        assert len(seen) == 120 and len({lead.id for lead in seen}) == 120
        assert [lead.created_at for lead in seen] == sorted(
            (x.created_at for x in seen), reverse=True
        )

        web = leads.list_leads(conn, source="web", query=Query(limit=1000)).items
        assert len(web) == 40
        qualified = leads.list_leads(conn, status="qualified", query=Query(limit=1000)).items
        assert len(qualified) == 24
        gold = leads.list_leads(conn, query=Query(attributes={"tier": "gold"}, limit=1000)).items
        assert len(gold) == 30
        even = leads.list_leads(conn, query=Query(search="even", limit=1000)).items
        assert len(even) == 60
        prefix = leads.list_leads(conn, query=Query(search="n11", limit=1000)).items
        assert {lead.first_name for lead in prefix} == {
            "n11",
            "n110",
            "n111",
            "n112",
            "n113",
            "n114",
            "n115",
            "n116",
            "n117",
            "n118",
            "n119",
        }
        window = Query(
            created_from=datetime(2026, 1, 1, 10, tzinfo=UTC),
            created_to=datetime(2026, 1, 1, 20, tzinfo=UTC),
            limit=1000,
        )
        assert len(leads.list_leads(conn, query=window).items) == 10
        assert leads.list_leads(conn, converted=True, query=Query(limit=1000)).items == []
        with pytest.raises(InvalidInput, match="cursor"):
            leads.list_leads(conn, query=Query(cursor="garbage"))
        with pytest.raises(InvalidInput, match="not a lead status"):
            leads.list_leads(conn, status="won")


def test_search_and_attribute_filters_use_their_indexes(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                'EXPLAIN SELECT id FROM leads WHERE attributes @> \'{"tier": "gold"}\''
            ).fetchall()
        )
        assert "leads_attributes_idx" in plan
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                "EXPLAIN SELECT id FROM leads WHERE aicrm_person_document(first_name, last_name, "
                "email, company_name) @@ to_tsquery('simple', 'ada:*')"
            ).fetchall()
        )
        assert "leads_search_idx" in plan


def test_contacts_belong_to_exactly_one_parent(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            lead = leads.create_lead(conn, email="boss@b2b.com")
            client = clients.create_client(conn, name="B2B Inc")
        with pytest.raises(InvalidInput, match="exactly one"), session.transaction(conn):
            contacts.create_contact(conn, lead_id=lead.id, client_id=client.id)
        with pytest.raises(InvalidInput, match="exactly one"), session.transaction(conn):
            contacts.create_contact(conn, email="orphan@b2b.com")
        with pytest.raises(NotFound), session.transaction(conn):
            contacts.create_contact(conn, lead_id="00000000-0000-0000-0000-000000000001")
        with session.transaction(conn):
            person = contacts.create_contact(conn, lead_id=lead.id, email="cto@b2b.com")
            moved = contacts.update_contact(conn, person.id, {"client_id": client.id})
        assert moved.client_id == client.id and moved.lead_id is None
        listed = contacts.list_contacts(conn, client_id=client.id).items
        assert [c.id for c in listed] == [person.id]


def test_clients_need_a_name(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with pytest.raises(InvalidInput, match="needs a name"), session.transaction(conn):
            clients.create_client(conn, name="  ")
        with session.transaction(conn):
            made = clients.create_client(conn, name="Globex", industry="energy")
        assert clients.list_clients(conn, industry="energy").items == [made]
