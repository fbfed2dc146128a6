"""Conversion: one transaction, permanent, idempotent, safe under concurrency."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from aicrm.crm import clients, contacts, conversion, leads, session
from aicrm.crm.store import Query
from aicrm.errors import AlreadyConverted, DuplicateFound, NotFound, ReadOnly
from tests.conftest import Database


def _lead(conn, **values):
    with session.transaction(conn):
        return leads.create_lead(conn, **values)


def test_conversion_creates_the_client_and_moves_contacts(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(
            conn,
            first_name="Grace",
            last_name="Hopper",
            email="grace@navy.mil",
            company_name="Navy",
            ai_score=0.8,
            attributes={"industry": "defense", "k": 1},
        )
        with session.transaction(conn):
            person = contacts.create_contact(conn, lead_id=lead.id, email="aide@navy.mil")
        done = conversion.convert_lead(conn, lead.id, actor="sales-bot")
        assert done.created_client and not done.already_converted and done.contacts_moved == 1
        client = clients.get_client(conn, done.client_id)
        assert (client.name, client.industry, client.ai_score) == ("Navy", "defense", 0.8)
        assert client.attributes == {"industry": "defense", "k": 1}
        after = leads.get_lead(conn, lead.id)
        assert after.is_converted and after.status == "converted"
        assert after.converted_to_client_id == client.id
        assert after.conversion_date == done.conversion_date and after.conversion_date is not None
        moved = contacts.get_contact(conn, person.id)
        assert (moved.client_id, moved.lead_id) == (client.id, None)


def test_client_name_falls_back_to_the_person_then_the_email(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        person = _lead(conn, first_name="Alan", last_name="Turing")
        mail_only = _lead(conn, email="only@mail.org")
        first = conversion.convert_lead(conn, person.id)
        second = conversion.convert_lead(conn, mail_only.id)
        assert clients.get_client(conn, first.client_id).name == "Alan Turing"
        assert clients.get_client(conn, second.client_id).name == "only@mail.org"


def test_converting_again_returns_the_same_result_and_writes_nothing(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="twice@x.org")
        first = conversion.convert_lead(conn, lead.id)
        history = crm_db.scalar("SELECT count(*) FROM crm_history")
        again = conversion.convert_lead(conn, lead.id)
        same_target = conversion.convert_lead(conn, lead.id, client_id=first.client_id)
    assert again.already_converted and again.client_id == first.client_id
    assert again.conversion_date == first.conversion_date
    assert same_target.already_converted
    assert crm_db.scalar("SELECT count(*) FROM crm_history") == history
    assert crm_db.scalar("SELECT count(*) FROM clients") == 1


def test_asking_for_another_target_is_a_clear_error(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="one@x.org")
        conversion.convert_lead(conn, lead.id)
        with session.transaction(conn):
            other = clients.create_client(conn, name="Other")
        with pytest.raises(AlreadyConverted, match="permanent"):
            conversion.convert_lead(conn, lead.id, client_id=other.id)


def test_into_an_existing_client_fills_only_empty_fields_unless_overwrite(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn):
            target = clients.create_client(conn, name="Keep Name", attributes={"a": "client"})
        lead = _lead(
            conn,
            company_name="Lead Co",
            email="fill@x.org",
            ai_score=0.4,
            attributes={"a": "lead", "b": "lead", "industry": "retail"},
        )
        conversion.convert_lead(conn, lead.id, client_id=target.id)
        filled = clients.get_client(conn, target.id)
        assert filled.name == "Keep Name" and filled.industry == "retail"
        assert filled.attributes == {"a": "client", "b": "lead", "industry": "retail"}
        assert filled.ai_score == pytest.approx(0.4)

        second = _lead(
            conn, company_name="Second Co", email="second@x.org", attributes={"a": "second"}
        )
        conversion.convert_lead(conn, second.id, client_id=target.id, overwrite=True)
        over = clients.get_client(conn, target.id)
        assert over.name == "Second Co" and over.attributes["a"] == "second"


def test_unknown_lead_or_client_and_duplicates_write_nothing(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with pytest.raises(NotFound):
            conversion.convert_lead(conn, uuid.uuid4())
        lead = _lead(conn, email="dup@x.org")
        with pytest.raises(NotFound):
            conversion.convert_lead(conn, lead.id, client_id=uuid.uuid4())
        _lead(conn, email="DUP@x.org", allow_duplicate=True)
        with pytest.raises(DuplicateFound):
            conversion.convert_lead(conn, lead.id)
        assert not leads.get_lead(conn, lead.id).is_converted
        assert crm_db.scalar("SELECT count(*) FROM clients") == 0
        done = conversion.convert_lead(conn, lead.id, allow_duplicate=True)
        assert done.created_client


def test_converted_lead_is_read_only_in_the_database_itself(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="ro@x.org")
        conversion.convert_lead(conn, lead.id)
    with crm_db.connect() as raw:
        with pytest.raises(psycopg.Error) as caught:
            raw.execute("UPDATE leads SET first_name = 'changed' WHERE id = %s", (lead.id,))
        assert caught.value.sqlstate == "AC001"
        raw.rollback()
        for statement in (
            "UPDATE leads SET is_converted = false, converted_to_client_id = NULL, "
            "conversion_date = NULL, status = 'new' WHERE id = %s",
            "DELETE FROM leads WHERE id = %s",
        ):
            with pytest.raises(psycopg.Error):
                raw.execute(statement, (lead.id,))
            raw.rollback()
        raw.execute("UPDATE leads SET ai_score = 0.9, ai_summary = 'hot' WHERE id = %s", (lead.id,))
        raw.commit()
    with crm_db.connect() as conn:
        with pytest.raises(ReadOnly), session.transaction(conn):
            leads.update_lead(conn, lead.id, {"source": "web"})
        with session.transaction(conn):
            assert leads.update_lead(conn, lead.id, {"ai_score": 0.1}).ai_score == pytest.approx(
                0.1
            )


def test_status_converted_cannot_be_set_by_hand(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="hand@x.org")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE leads SET status = 'converted' WHERE id = %s", (lead.id,))


def test_eight_concurrent_conversions_create_exactly_one_client(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="race@x.org")
    barrier = threading.Barrier(8)
    results: list[conversion.Conversion] = []
    errors: list[BaseException] = []

    def convert() -> None:
        try:
            with crm_db.connect() as own:
                barrier.wait(timeout=30)
                results.append(conversion.convert_lead(own, lead.id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=convert) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(results) == 8
    assert len({r.client_id for r in results}) == 1
    assert sum(not r.already_converted for r in results) == 1
    assert crm_db.scalar("SELECT count(*) FROM clients") == 1


def test_bulk_conversion_by_ids_and_by_filter(crm_db: Database) -> None:
    crm_db.execute(
        "INSERT INTO leads (email, source, company_name) SELECT 'b' || i || '@bulk.io', "
        "CASE WHEN i <= 30 THEN 'event' ELSE 'web' END, 'Bulk ' || i FROM generate_series(1, 50) i"
    )
    crm_db.execute(
        "INSERT INTO contacts (lead_id, email) SELECT id, 'c.' || email FROM leads "
        "WHERE source = 'event' LIMIT 10"
    )
    ids = [r[0] for r in crm_db.execute("SELECT id FROM leads WHERE source = 'web'")]
    steps: list[tuple[int, int]] = []
    with crm_db.connect() as conn:
        result = conversion.convert_leads(conn, ids, progress=lambda d, t: steps.append((d, t)))
        assert len(result.converted) == 20 and steps[-1] == (20, 20)
        by_filter = conversion.convert_leads(conn, query=Query(where={"source": "event"}))
        assert len(by_filter.converted) == 30
        again = conversion.convert_leads(conn, ids)
        assert again.converted == {} and len(again.already_converted) == 20
    assert crm_db.scalar("SELECT count(*) FROM clients") == 50
    assert (
        crm_db.scalar("SELECT count(*) FROM leads WHERE is_converted AND status = 'converted'")
        == 50
    )
    assert crm_db.scalar("SELECT count(*) FROM contacts WHERE client_id IS NOT NULL") == 10
    names = {r[0] for r in crm_db.execute("SELECT name FROM clients")}
    assert "Bulk 1" in names


def test_bulk_is_all_or_nothing_unless_per_row_results_are_asked(crm_db: Database) -> None:
    crm_db.execute(
        "INSERT INTO leads (email) SELECT 'r' || i || '@x.org' FROM generate_series(1, 5) i;"
        "INSERT INTO leads (email) VALUES ('R1@x.org')"
    )
    ids = [r[0] for r in crm_db.execute("SELECT id FROM leads WHERE email LIKE 'r%'")]
    missing = uuid.uuid4()
    with crm_db.connect() as conn:
        with pytest.raises(NotFound):
            conversion.convert_leads(conn, [*ids, missing])
        with pytest.raises(DuplicateFound):
            conversion.convert_leads(conn, ids)
        assert crm_db.scalar("SELECT count(*) FROM clients") == 0
        result = conversion.convert_leads(conn, [*ids, missing], all_or_nothing=False)
    assert result.not_found == [missing]
    assert len(result.duplicates) == 1 and len(result.converted) == 4
    assert crm_db.scalar("SELECT count(*) FROM clients") == 4


# The conversion runs in the database (aicrm_convert_lead, migration 006); its errors
# come back as the same aicrm errors, messages and details as before.


def test_errors_keep_their_messages_details_and_exit_codes(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        missing = uuid.uuid4()
        with pytest.raises(NotFound) as unknown:
            conversion.convert_lead(conn, missing)
        assert unknown.value.message == f"No lead has id {missing}."
        assert unknown.value.exit_code == 4

        lead = _lead(conn, first_name="Ada", last_name="Lovelace", email="ada@x.org")
        with pytest.raises(NotFound) as no_client:
            conversion.convert_lead(conn, lead.id, client_id=missing)
        assert no_client.value.message == f"No client has id {missing}."

        twin = _lead(conn, company_name="Twin Co", email="ADA@x.org", allow_duplicate=True)
        with session.transaction(conn):
            aide = contacts.create_contact(
                conn,
                client_id=clients.create_client(conn, name="C").id,
                email="Ada@X.org",
                allow_duplicate=True,
            )
        with pytest.raises(DuplicateFound) as duplicate:
            conversion.convert_lead(conn, lead.id)
        first, second = sorted([("contact", aide.id, "Ada@X.org"), ("lead", twin.id, "Twin Co")])
        assert duplicate.value.message == (
            f"The email ada@x.org already belongs to {first[0]} {first[1]} ({first[2]}), "
            f"{second[0]} {second[1]} ({second[2]}). Merge them ('aicrm leads merge'), or "
            "allow the duplicate explicitly."
        )
        assert duplicate.value.details == {
            "conflicting": [
                {"kind": "contact", "id": str(aide.id), "email": "Ada@X.org", "name": "Ada@X.org"},
                {"kind": "lead", "id": str(twin.id), "email": "ADA@x.org", "name": "Twin Co"},
            ]
        }
        assert duplicate.value.exit_code == 5

        done = conversion.convert_lead(conn, lead.id, allow_duplicate=True)
        with session.transaction(conn):
            other = clients.create_client(conn, name="Other")
        with pytest.raises(AlreadyConverted) as converted:
            conversion.convert_lead(conn, lead.id, client_id=other.id)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert converted.value.message == (
            f"Lead {lead.id} was already converted, to client {done.client_id} on "
            f"{done.conversion_date:%Y-%m-%d}; a conversion is permanent and cannot be "
            "redone into another client."
        )
        after = leads.get_lead(conn, lead.id)
        assert converted.value.details == {"conflicting": after.to_dict()}
        assert converted.value.exit_code == 5


def test_more_than_five_duplicates_are_counted_not_listed(crm_db: Database) -> None:
    crm_db.execute(
        "INSERT INTO leads (email) SELECT 'Many@x.org' FROM generate_series(1, 7);"
        "INSERT INTO leads (email) VALUES ('many@x.org')"
    )
    lead = crm_db.scalar("SELECT id FROM leads WHERE email = 'many@x.org'")
    with crm_db.connect() as conn, pytest.raises(DuplicateFound) as caught:
        conversion.convert_lead(conn, lead)
    assert caught.value.message.count("lead ") == 5
    assert " and 2 more. Merge them" in caught.value.message
    assert len(caught.value.details["conflicting"]) == 7


def test_the_actor_is_recorded_and_the_connection_left_as_it_was(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="who@x.org")
        done = conversion.convert_lead(conn, lead.id, actor="sales-bot")
        assert not conn.autocommit
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    actors = crm_db.execute(
        "SELECT DISTINCT actor FROM crm_history WHERE row_id IN (%s, %s) "
        "AND operation <> 'insert' OR (table_name = 'clients' AND row_id = %s)",
        (lead.id, done.client_id, done.client_id),
    )
    assert actors == [("sales-bot",)]
    with crm_db.connect(autocommit=True) as conn:
        second = conversion.convert_lead(conn, _lead(conn, email="auto@x.org").id)
        assert conn.autocommit and second.created_client


def test_inside_the_callers_transaction_a_failure_spoils_only_the_conversion(
    crm_db: Database,
) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="outer@x.org")
        with conn.transaction():
            kept = clients.create_client(conn, name="Made before")
            with pytest.raises(NotFound):
                conversion.convert_lead(conn, lead.id, client_id=uuid.uuid4())
            done = conversion.convert_lead(conn, lead.id, client_id=kept.id, actor="outer")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert not done.created_client and done.client_id == kept.id
    assert crm_db.scalar("SELECT is_converted FROM leads WHERE id = %s", (lead.id,))
    assert crm_db.scalar("SELECT count(*) FROM clients") == 1
