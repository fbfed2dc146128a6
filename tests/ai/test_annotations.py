"""Annotations: the documented structure, merged in SQL, safe under concurrency."""

from __future__ import annotations

import threading
import uuid

import pytest

import aicrm.ai.annotations as notes
from aicrm.crm import clients, contacts, conversion, leads, session
from aicrm.errors import InvalidInput, NotFound
from tests.conftest import Database
from tests.support import wait_for


def _lead(conn, **values):
    with session.transaction(conn):
        return leads.create_lead(conn, **values)


def test_an_entry_has_the_documented_structure_and_merges_values(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="a@x.org")
        notes.annotate(
            conn, "leads", lead.id, "classifier", model="m", version="1",
            values={"intent": "buy"}, confidence=0.7,
        )  # fmt: skip
        after = notes.annotate(
            conn, "leads", lead.id, "classifier", model="m", version="2", values={"size": "big"}
        )
        entry = after["classifier"]
        assert set(entry) == {"model", "version", "produced_at", "confidence", "values"}
        assert entry["version"] == "2" and entry["confidence"] is None
        assert entry["values"] == {"intent": "buy", "size": "big"}
        replaced = notes.annotate(
            conn, "leads", lead.id, "classifier", model="m", version="3", values={"x": 1},
            replace=True,
        )  # fmt: skip
        assert replaced["classifier"]["values"] == {"x": 1}
        found = notes.read(conn, "leads", lead.id)
        assert found["classifier"].version == "3"
        assert leads.get_lead(conn, lead.id).updated_at == lead.updated_at  # not restamped


def test_other_annotators_and_non_object_values_are_kept(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="b@x.org", ai_annotations={"legacy_tool": {"values": {"a": 1}}})
        notes.annotate(conn, "leads", lead.id, "scorer", model="s", version="1", values={})
        crm_db.execute("UPDATE leads SET ai_annotations = '[1, 2]' WHERE id = %s", (lead.id,))
        after = notes.annotate(conn, "leads", lead.id, "scorer", model="s", version="2", values={})
        assert after["_previous"] == [1, 2] and after["scorer"]["version"] == "2"
        assert notes.remove(conn, "leads", lead.id, "scorer") is True
        assert notes.remove(conn, "leads", lead.id, "scorer") is False
        assert "scorer" not in notes.read(conn, "leads", lead.id)


def test_converted_leads_clients_and_contacts_accept_annotations(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="c@x.org", company_name="C")
        done = conversion.convert_lead(conn, lead.id)
        notes.annotate(conn, "leads", lead.id, "scorer", model="s", version="1",
                             values={"score": 0.9})  # fmt: skip
        notes.annotate(conn, "clients", done.client_id, "churn", model="c", version="1",
                             values={"risk": "low"})  # fmt: skip
        with session.transaction(conn):
            person = contacts.create_contact(conn, client_id=done.client_id, email="p@x.org")
        notes.annotate(conn, "contacts", person.id, "role", model="r", version="1",
                             values={"buyer": True})  # fmt: skip
        assert notes.read(conn, "leads", lead.id)["scorer"].values == {"score": 0.9}
        assert clients.get_client(conn, done.client_id).ai_annotations["churn"]["values"] == {
            "risk": "low"
        }
        assert contacts.get_contact(conn, person.id).ai_annotations["role"]["values"]["buyer"]


def test_bad_input_is_refused_clearly(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        lead = _lead(conn, email="d@x.org")
        with pytest.raises(NotFound):
            notes.annotate(conn, "leads", uuid.uuid4(), "a", model="m", version="1",
                                 values={})  # fmt: skip
        with pytest.raises(InvalidInput, match="annotator"):
            notes.annotate(conn, "leads", lead.id, "Bad Name", model="m", version="1",
                                 values={})  # fmt: skip
        with pytest.raises(InvalidInput, match="confidence"):
            notes.annotate(conn, "leads", lead.id, "a", model="m", version="1", values={},
                                 confidence=2.0)  # fmt: skip
        with pytest.raises(InvalidInput, match="not on 'users'"):
            notes.read(conn, "users", lead.id)
        with pytest.raises(InvalidInput, match="valid"):
            notes.read(conn, "leads", "nope")


def test_annotate_many_is_one_update(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        made = [_lead(conn, email=f"m{i}@x.org") for i in range(5)]
        entries = [
            (lead.id, notes.entry(model="m", version="1", values={"i": i, "tab": "a\tb"}))
            for i, lead in enumerate(made)
        ]
        assert notes.annotate_many(conn, "leads", "bulk", [*entries, (uuid.uuid4(), {})]) == 5
        for i, lead in enumerate(made):
            assert notes.read(conn, "leads", lead.id)["bulk"].values == {
                "i": i,
                "tab": "a\tb",
            }


def test_a_blocked_annotator_merges_into_what_the_first_committed(crm_db: Database) -> None:
    """Writer A holds the row lock; writer B waits for it (seen in pg_locks), then
    merges into A's committed value: both keys survive."""
    with crm_db.connect() as setup:
        lead = _lead(setup, email="lock@x.org")
    with crm_db.connect() as first, crm_db.connect() as second:
        pid = second.info.backend_pid
        with first.transaction():
            first.execute(
                "UPDATE leads SET ai_annotations = aicrm_annotate(ai_annotations, 'a', %s::jsonb) "
                "WHERE id = %s",
                ('{"model": "a", "version": "1", "values": {"k": 1}}', lead.id),
            )
            errors: list[BaseException] = []

            def other() -> None:
                try:
                    notes.annotate(second, "leads", lead.id, "b", model="b", version="1",
                                         values={"k": 2})  # fmt: skip
                except BaseException as exc:  # surfaced below
                    errors.append(exc)

            thread = threading.Thread(target=other)
            thread.start()
            wait_for(
                lambda: bool(crm_db.scalar(
                    "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)
                )),
                "the second annotator to wait for the row lock",
            )  # fmt: skip
        thread.join(timeout=60)
        assert not errors
    found = crm_db.scalar("SELECT ai_annotations FROM leads WHERE id = %s", (lead.id,))
    assert found["a"]["values"] == {"k": 1} and found["b"]["values"] == {"k": 2}


def test_concurrent_annotators_never_erase_each_other(crm_db: Database) -> None:
    with crm_db.connect() as setup:
        lead = _lead(setup, email="many@x.org")
    writers, rounds = 6, 15
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            with crm_db.connect() as conn:
                start.wait()
                for r in range(rounds):
                    notes.annotate(conn, "leads", lead.id, f"w{k}", model="w",
                                         version=str(r), values={f"r{r}": r})  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    found = crm_db.scalar("SELECT ai_annotations FROM leads WHERE id = %s", (lead.id,))
    assert set(found) == {f"w{k}" for k in range(writers)}
    for k in range(writers):
        assert found[f"w{k}"]["version"] == str(rounds - 1)
        assert found[f"w{k}"]["values"] == {f"r{r}": r for r in range(rounds)}
