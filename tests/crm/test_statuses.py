"""Lead statuses as data: list, add, remove; the readers (lead checks, import, the
funnel) follow the table, and the database enforces it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from aicrm.crm import importer, leads, reports, session, statuses
from aicrm.errors import Conflict, InvalidInput, NotFound
from tests.conftest import Database


def order(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, str]]:
    return [(s.name, s.category) for s in statuses.list_statuses(conn)]


def test_defaults_in_funnel_order(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        assert order(conn) == list(statuses.DEFAULTS)


def test_add_places_and_renumbers(crm_db: Database) -> None:
    with crm_db.connect() as conn, session.transaction(conn, "t"):
        statuses.add_status(conn, "demo_scheduled", "open", after="contacted")
        statuses.add_status(conn, "nurturing")  # default: after the last open one
        statuses.add_status(conn, "churned", "lost")
        assert [name for name, _ in order(conn)] == [
            "new", "contacted", "demo_scheduled", "qualified", "nurturing", "converted",
            "unqualified", "lost", "churned",
        ]  # fmt: skip
        positions = [s.position for s in statuses.list_statuses(conn)]
        assert positions == [10 * (i + 1) for i in range(len(positions))]


def test_add_refusals(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        for name, category, after, error, text in (
            ("Demo Scheduled", "open", None, InvalidInput, "not a status name"),
            ("won", "converted", None, InvalidInput, "open or lost"),
            ("qualified", "open", None, Conflict, "exists already"),
            ("won", "open", "nowhere", NotFound, "no status 'nowhere'"),
        ):
            with pytest.raises(error, match=text), session.transaction(conn, "t"):
                statuses.add_status(conn, name, category, after)
        # The database itself refuses a second converted status and an unknown one.
        with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
            conn.execute(
                "INSERT INTO lead_statuses (name, category, position) "
                "VALUES ('won', 'converted', 1)"
            )
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute("INSERT INTO leads (email, status) VALUES ('x@example.org', 'hot')")


def test_leads_take_added_statuses(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with (
            pytest.raises(InvalidInput, match="aicrm statuses add nurturing"),
            session.transaction(conn, "t"),
        ):
            leads.create_lead(conn, email="a@example.org", status="nurturing")
        with session.transaction(conn, "t"):
            statuses.add_status(conn, "nurturing")
            lead = leads.create_lead(conn, email="a@example.org", status="nurturing")
        assert lead.status == "nurturing"
        assert [x.id for x in leads.list_leads(conn, status="nurturing").items] == [lead.id]
        with pytest.raises(InvalidInput, match="not a lead status"):
            leads.list_leads(conn, status="hot")
        with pytest.raises(InvalidInput, match="only by converting"), session.transaction(conn):
            leads.update_lead(conn, lead.id, {"status": "converted"})


def test_import_checks_against_the_table(crm_db: Database, tmp_path: Path) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("email,status\nn1@example.org,nurturing\nn2@example.org,new\n")
    with crm_db.connect() as conn:
        with pytest.raises(InvalidInput, match="status 'nurturing' is not a lead status"):
            importer.import_leads(conn, csv)
        with session.transaction(conn, "t"):
            statuses.add_status(conn, "nurturing")
        done = importer.import_leads(conn, csv)
        assert done.imported == 2


def test_funnel_follows_the_table(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn, "t"):
            statuses.add_status(conn, "demo_scheduled", after="contacted")
            statuses.add_status(conn, "churned", "lost")
            lead = leads.create_lead(conn, email="f@example.org")
            leads.update_lead(conn, lead.id, {"status": "demo_scheduled"})
        stages = reports.status_funnel(conn)
        assert [s.status for s in stages] == [
            "new", "contacted", "demo_scheduled", "qualified", "converted", "unqualified",
            "lost", "churned",
        ]  # fmt: skip
        demo = next(s for s in stages if s.status == "demo_scheduled")
        assert (demo.reached, demo.current) == (1, 1)
        contacted = next(s for s in stages if s.status == "contacted")
        assert contacted.reached == 1  # a later stage implies the earlier ones


def test_remove_moves_leads_and_keeps_defaults(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with session.transaction(conn, "t"):
            statuses.add_status(conn, "nurturing")
            lead = leads.create_lead(conn, email="r@example.org", status="nurturing")
        with session.transaction(conn, "t"):
            assert statuses.remove_status(conn, "nurturing", "contacted") == 1
        assert leads.get_lead(conn, lead.id).status == "contacted"
        assert "nurturing" not in statuses.names(conn)
        with pytest.raises(InvalidInput, match="aicrm's own statuses"):
            statuses.remove_status(conn, "lost", "new")
        with pytest.raises(NotFound):
            statuses.remove_status(conn, "nurturing", "new")
