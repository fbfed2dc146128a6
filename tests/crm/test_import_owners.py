"""Imported leads get their owners from the assignment rules (issue #17): round-robin
dealt set-based, per source, an explicit owner kept, the turn carried on consistently
with single creations (aicrm_next_owner)."""

from __future__ import annotations

import uuid
from pathlib import Path

from aicrm.crm import importer, leads, session, users
from aicrm.db import Connection
from tests.conftest import Database


def _users(conn: Connection, *names: str) -> list[users.User]:
    made = []
    for name in names:  # one transaction each: the turn follows creation, then id
        with session.transaction(conn):
            made.append(users.add_user(conn, name, f"{name.lower()}@example.org"))
    return made


def _owners(conn: Connection) -> dict[str, uuid.UUID | None]:
    rows = conn.execute("SELECT email, owner_id FROM leads").fetchall()
    return {email: owner for email, owner in rows}


def _last(conn: Connection, source: str | None) -> uuid.UUID | None:
    rule = users.find_rule(conn, source)
    assert rule is not None
    return rule.last_user_id


def test_ten_imported_leads_alternate_between_two_users(crm_db: Database, tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("email,source\n" + "".join(f"l{i}@x.org,web\n" for i in range(10)))
    with crm_db.connect() as conn:
        ada, bob = _users(conn, "Ada", "Bob")
        with session.transaction(conn):
            users.set_rule(conn, None, [ada.id, bob.id])
        result = importer.import_leads(conn, path)
        assert result.imported == 10
        owners = _owners(conn)
        assert [owners[f"l{i}@x.org"] for i in range(10)] == [ada.id, bob.id] * 5
        assert _last(conn, None) == bob.id
        # the next lead created alone takes the next turn
        with session.transaction(conn):
            assert leads.create_lead(conn, email="next@x.org").owner_id == ada.id


def test_per_source_rules_explicit_owners_and_skipped_rows(
    crm_db: Database, tmp_path: Path
) -> None:
    with crm_db.connect() as conn:
        ada, bob, cy, dan = _users(conn, "Ada", "Bob", "Cy", "Dan")
        with session.transaction(conn):
            users.set_rule(conn, None)  # any source: every active user in turn
            users.set_rule(conn, "partner", [cy.email, dan.email])
            users.set_rule(conn, "fair", [bob.id])
            users.deactivate_user(conn, bob.id)  # the fair's rule has nobody active
            # the turn of the rule for any source is past Ada already
            assert leads.create_lead(conn, email="first@x.org").owner_id == ada.id
        rows = [
            ("a@x.org", "web", ""),
            ("b@x.org", "partner", ""),
            ("c@x.org", "partner", str(ada.id)),  # explicit: kept, no turn taken
            ("d@x.org", "", ""),  # a blank source: the rule for any source
            ("bad", "partner", ""),  # invalid, skipped: takes no turn
            ("e@x.org", "partner", " "),  # a blank owner: dealt
            ("f@x.org", "fair", ""),  # its rule has nobody active: nobody
            ("g@x.org", "web", ""),
        ]
        path = tmp_path / "leads.csv"
        path.write_text("email,source,owner_id\n" + "".join(",".join(r) + "\n" for r in rows))
        # What single creations would give, one by one, from the same state.
        with conn.transaction(force_rollback=True):
            expected = {
                email: uuid.UUID(owner) if owner.strip() else users.next_owner(conn, source)
                for email, source, owner in rows
                if email != "bad"
            }
            lasts = {s: _last(conn, s) for s in (None, "partner", "fair")}
        result = importer.import_leads(conn, path, skip_invalid=True)
        assert (result.imported, result.rejected) == (7, 1)
        owners = _owners(conn)
        assert {email: owners[email] for email in expected} == expected
        assert expected == {
            "a@x.org": cy.id,
            "b@x.org": cy.id,
            "c@x.org": ada.id,
            "d@x.org": dan.id,
            "e@x.org": dan.id,
            "f@x.org": None,
            "g@x.org": ada.id,
        }
        assert {s: _last(conn, s) for s in lasts} == lasts


def test_no_rule_no_owner_and_a_historical_import_is_not_dealt(
    crm_db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("email\nx@x.org\n")
    with crm_db.connect() as conn:
        _users(conn, "Ada")  # a user: without a rule, still nobody
        importer.import_leads(conn, path)
        assert _owners(conn) == {"x@x.org": None}
        with session.transaction(conn):
            users.set_rule(conn, None)
        path.write_text("email,created_at\nold@x.org,2020-01-01T00:00:00Z\n")
        importer.import_csv(conn, importer.LEADS_HISTORY, path)
        assert _owners(conn)["old@x.org"] is None
        assert _last(conn, None) is None
