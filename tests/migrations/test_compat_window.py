"""Issue #12 point 3: a compatibility window keeps code written for version 000 working
before, during and after migration 001, until the window is closed."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aicrm.db.script import trusted
from tests.conftest import Database
from tests.migrations.legacy import run_json
from tests.migrations.test_online_helpers import kill_at
from tests.production import Production, Shape, drop_roles, production
from tests.support import MIGRATIONS, schema_dump

NO_STATUSES = Shape(custom_statuses=False)
WINDOW = "aicrm_compat_000"

# What the old application does, in the pre-001 shape (000_original_schema.sql).
OLD_READ = """
SELECT l.id, l.client_id, c.converted_from_lead_id, l.email
FROM leads AS l LEFT JOIN clients AS c ON c.id = l.client_id
ORDER BY l.email
"""

PIPELINE = "SELECT id, email, client_id, client_name FROM sales_pipeline ORDER BY id"


def old_url(db: Database, prod: Production | None = None) -> str:
    """How an old instance connects during the window (as the app role, if given)."""
    params: dict[str, Any] = {"options": f"-csearch_path={WINDOW},public"}
    if prod is not None:
        params["user"] = prod.app_role
    return psycopg.conninfo.make_conninfo(db.url, **params)


def old_code_round(conn: psycopg.Connection[Any]) -> tuple[str, str]:
    """The old conversion flow: a lead, a client converted from it, the lead's client_id;
    then the reads of the old code. Returns (lead, client)."""
    tag = uuid.uuid4().hex[:8]
    row = conn.execute(
        "INSERT INTO leads (first_name, email, source) VALUES ('Old', %s, 'web') RETURNING id",
        (f"old-{tag}@example.org",),
    ).fetchone()
    assert row is not None
    lead = row[0]
    row = conn.execute(
        "INSERT INTO clients (name, converted_from_lead_id) VALUES (%s, %s) RETURNING id",
        (f"Old client {tag}", lead),
    ).fetchone()
    assert row is not None
    client = row[0]
    conn.execute(
        "UPDATE leads SET client_id = %s, status = 'converted' WHERE id = %s", (client, lead)
    )
    conn.execute(
        "INSERT INTO contacts (client_id, email) VALUES (%s, %s)", (client, f"c-{tag}@example.org")
    )
    got = conn.execute(
        "SELECT l.client_id, c.converted_from_lead_id FROM leads AS l "
        "JOIN clients AS c ON c.id = l.client_id WHERE l.id = %s",
        (lead,),
    ).fetchone()
    assert got == (client, lead)
    count = conn.execute("SELECT count(*) FROM contacts WHERE client_id = %s", (client,))
    assert count.fetchone() == (1,)
    return str(lead), str(client)


@pytest.mark.slow
def test_old_code_before_during_and_after_001_then_the_window_closes(db: Database) -> None:
    with production(db, NO_STATUSES) as prod:
        # Before: the old code on 000, as the application role.
        with psycopg.connect(old_url(db, prod), autocommit=True) as old:
            old_code_round(old)
            before = old.execute(OLD_READ).fetchall()
            assert len(before) == 6  # the confidential lead is hidden by RLS
        # (002 gives converted leads the status 'converted': the views' other columns.)
        pipeline = db.execute(PIPELINE)
        db.execute("REFRESH MATERIALIZED VIEW client_origins")
        origins = db.execute("SELECT * FROM client_origins ORDER BY id")

        # During: an old instance keeps reading while 001 runs.
        errors: list[BaseException] = []
        reads = [0]
        done = threading.Event()

        def keep_reading() -> None:
            with psycopg.connect(old_url(db, prod), autocommit=True) as conn:
                while not done.is_set():
                    try:
                        conn.execute(OLD_READ).fetchall()
                        reads[0] += 1
                    except psycopg.Error as exc:
                        errors.append(exc)
                        return

        reader = threading.Thread(target=keep_reading, daemon=True)
        reader.start()
        up, report = run_json(db, "db", "migrate", "--compat-window", "--rebuild-dependents")
        done.set()
        reader.join(timeout=30)
        assert up.returncode == 0, up.stdout + up.stderr
        assert not errors, errors
        assert f"recreated view public.sales_pipeline on {WINDOW}_definer" in report["compat"]
        assert report["backup"] is not None

        # The rebuilt dependents answer as before, keep grants and comments.
        assert db.execute(PIPELINE) == pipeline
        db.execute("REFRESH MATERIALIZED VIEW client_origins")
        assert db.execute("SELECT * FROM client_origins ORDER BY id") == origins
        assert db.scalar("SELECT obj_description('sales_pipeline'::regclass, 'pg_class')") == (
            "Leads and the client they became."
        )
        with prod.app_connect(db, autocommit=True) as app:
            # sales_pipeline read as its owner before (row-level security of its owner,
            # a superuser here): it still does, through the window's definer views.
            assert app.execute(PIPELINE).fetchall() == pipeline
            assert app.execute("SELECT * FROM client_origins ORDER BY id").fetchall() == origins

        # After: same rows through the window, and the old flow still works.
        with psycopg.connect(old_url(db, prod), autocommit=True) as old:
            assert old.execute(OLD_READ).fetchall() == before
            lead, client = old_code_round(old)
        assert db.scalar(
            "SELECT converted_to_client_id FROM leads WHERE id = %s AND is_converted", (lead,)
        ) == uuid.UUID(client)
        converted = db.scalar("SELECT id FROM leads WHERE first_name = 'converted_1'")
        assert db.scalar("SELECT lead_client(%s)", (converted,)) is not None

        # Status shows the window and what uses it.
        status = db.cli("db", "status")
        assert f"window {WINDOW} open" in status.stdout, status.stdout
        assert "sales_pipeline" in status.stdout

        # Closing refuses while dependents use it, naming them; following its advice works.
        refused = db.cli("db", "compat", "close")
        assert refused.returncode == 3, refused.stdout + refused.stderr
        for name in ("sales_pipeline", "client_origins", "lead_client(uuid)"):
            assert name in refused.stderr
        db.execute(
            "CREATE OR REPLACE VIEW public.sales_pipeline AS "
            "SELECT l.id, l.email, l.status, l.converted_to_client_id AS client_id, "
            "c.name AS client_name FROM public.leads AS l "
            "LEFT JOIN public.clients AS c ON c.id = l.converted_to_client_id"
        )
        db.execute("DROP MATERIALIZED VIEW client_origins")
        db.execute(
            "CREATE MATERIALIZED VIEW client_origins AS SELECT c.id, c.name, "
            "l.id AS converted_from_lead_id, l.source AS lead_source FROM clients AS c "
            "LEFT JOIN leads AS l ON l.converted_to_client_id = c.id"
        )
        db.execute(
            "CREATE OR REPLACE FUNCTION lead_client(lead uuid) RETURNS uuid LANGUAGE sql "
            "STABLE AS $$ SELECT converted_to_client_id FROM leads WHERE id = $1 $$"
        )
        db.execute("ALTER FUNCTION lead_client(uuid) RESET search_path")
        closed = db.cli("db", "compat", "close")
        assert closed.returncode == 0, closed.stdout + closed.stderr
        assert db.scalar("SELECT to_regnamespace(%s)", (WINDOW,)) is None
        assert "compat:" not in db.cli("db", "status").stdout
        # After the window: the old code fails, the new code works.
        with (
            psycopg.connect(old_url(db, prod), autocommit=True) as old,
            pytest.raises(psycopg.errors.UndefinedColumn),
        ):
            old.execute("SELECT client_id FROM leads")
        assert db.scalar("SELECT lead_client(%s)", (converted,)) is not None


@pytest.mark.slow
def test_writes_the_new_structure_cannot_express_are_refused_clearly(db: Database) -> None:
    db.execute(trusted((MIGRATIONS / "000_original_schema.sql").read_text()))
    up = db.cli("db", "migrate", "--compat-window")
    assert up.returncode == 0, up.stdout + up.stderr
    with psycopg.connect(old_url(db), autocommit=True) as old:
        lead, client = old_code_round(old)
        for statement, params, words in [
            ("UPDATE leads SET client_id = NULL WHERE id = %s", (lead,), "conversion is permanent"),
            (
                "UPDATE clients SET converted_from_lead_id = NULL WHERE id = %s",
                (client,),
                "conversion is permanent",
            ),
            (
                "INSERT INTO clients (name, converted_from_lead_id) VALUES ('x', %s)",
                (lead,),
                "already converted to another client",
            ),
            (
                "INSERT INTO contacts (lead_id, client_id) VALUES (%s, %s)",
                (lead, client),
                "both a lead and a client",
            ),
            ("INSERT INTO contacts (email) VALUES (%s)", ("orphan@example.org",), "no parent"),
        ]:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match=words):
                old.execute(statement, params)
        # Everything the new structure expresses: plain updates, deletes, a lead inserted
        # as converted, RETURNING with the table's defaults.
        row = old.execute(
            "INSERT INTO leads (email, client_id) VALUES ('x@example.org', %s) "
            "RETURNING id, status, client_id, created_at IS NOT NULL",
            (client,),
        ).fetchone()
        assert row is not None and row[1:] == ("converted", uuid.UUID(client), True)
        old.execute("UPDATE clients SET industry = 'retail' WHERE id = %s", (client,))
        free = old.execute("INSERT INTO leads (email) VALUES ('y@example.org') RETURNING id")
        free_id = free.fetchone()[0]  # type: ignore[index]
        assert old.execute("DELETE FROM leads WHERE id = %s", (free_id,)).rowcount == 1
    assert db.scalar("SELECT count(*) FROM leads WHERE converted_to_client_id = %s", (client,)) == 2
    # The way back needs the window closed first; its advice works.
    down = db.cli("db", "downgrade", "000")
    assert down.returncode == 2 and "aicrm db compat close" in down.stderr, down.stderr
    assert db.cli("db", "compat", "close").returncode == 0
    back = db.cli("db", "downgrade", "000")
    assert back.returncode == 0, back.stdout + back.stderr


@pytest.mark.slow
def test_a_security_invoker_view_keeps_reading_as_its_caller(db: Database) -> None:
    with production(db, Shape(custom_statuses=False, materialized_view=False)) as prod:
        db.execute(
            "CREATE VIEW linked_leads WITH (security_invoker = true) AS "
            "SELECT id, email, client_id FROM leads"
        )
        db.execute(
            sql.SQL("GRANT SELECT ON linked_leads TO {}").format(sql.Identifier(prod.app_role))
        )
        query = "SELECT email FROM linked_leads ORDER BY email"
        with prod.app_connect(db, autocommit=True) as app:
            before = app.execute(query).fetchall()
        assert ("confidential@example.org",) not in before
        up, report = run_json(db, "db", "migrate", "--compat-window", "--rebuild-dependents")
        assert up.returncode == 0, up.stderr
        assert f"recreated view public.linked_leads on {WINDOW}" in report["compat"]
        with prod.app_connect(db, autocommit=True) as app:
            assert app.execute(query).fetchall() == before
        assert len(db.execute(query)) == len(before) + 1  # the owner sees every lead


def test_a_dry_run_with_the_window_changes_nothing(db: Database) -> None:
    with production(db, NO_STATUSES):
        before = schema_dump(db)
        dry, report = run_json(
            db, "db", "migrate", "--dry-run", "--compat-window", "--rebuild-dependents"
        )
        assert dry.returncode == 0, dry.stderr
        assert any("recreated materialized view" in note for note in report["compat"])
        assert schema_dump(db) == before


@pytest.mark.slow
def test_impossible_window_requests_are_refused(db: Database) -> None:
    db.execute(trusted((MIGRATIONS / "000_original_schema.sql").read_text()))
    alone = db.cli("db", "migrate", "--rebuild-dependents")
    assert alone.returncode == 2 and "needs --compat-window" in alone.stderr
    assert db.cli("db", "migrate").returncode == 0
    late = db.cli("db", "migrate", "--compat-window")
    assert late.returncode == 2 and "not pending" in late.stderr
    none = db.cli("db", "compat", "close")
    assert none.returncode == 2 and "No compatibility window is open" in none.stderr


@pytest.mark.slow
def test_a_rebuilt_view_keeps_its_owner_grants_and_comments(db: Database) -> None:
    owner = f"crm_reports_{uuid.uuid4().hex[:8]}"
    with production(db, Shape(custom_statuses=False, materialized_view=False)) as prod:
        try:
            role = sql.Identifier(owner)
            db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
            db.execute(sql.SQL("GRANT SELECT ON leads, clients TO {}").format(role))
            db.execute(
                sql.SQL("CREATE POLICY reports_all ON leads TO {} USING (true)").format(role)
            )
            db.execute(sql.SQL("ALTER VIEW sales_pipeline OWNER TO {}").format(role))
            db.execute("COMMENT ON COLUMN sales_pipeline.client_name IS 'The client''s name.'")
            with prod.app_connect(db, autocommit=True) as app:
                before = app.execute(PIPELINE).fetchall()
            up = db.cli("db", "migrate", "--compat-window", "--rebuild-dependents")
            assert up.returncode == 0, up.stdout + up.stderr
            assert (
                db.scalar(
                    "SELECT pg_get_userbyid(relowner) FROM pg_class "
                    "WHERE oid = 'sales_pipeline'::regclass"
                )
                == owner
            )
            assert (
                db.scalar("SELECT col_description('sales_pipeline'::regclass, 5)")
                == "The client's name."
            )
            assert db.scalar(
                "SELECT has_table_privilege(%s, 'sales_pipeline', 'SELECT')", (prod.app_role,)
            )
            with prod.app_connect(db, autocommit=True) as app:
                assert app.execute(PIPELINE).fetchall() == before
            # The window's owner-rights views are readable by that owner only.
            assert db.scalar(
                "SELECT has_table_privilege(%s, 'aicrm_compat_000_definer.leads', 'SELECT')",
                (owner,),
            )
            assert not db.scalar(
                "SELECT has_table_privilege(%s, 'aicrm_compat_000_definer.leads', 'SELECT')",
                (prod.app_role,),
            )
        finally:
            drop_roles(db, [owner])


@pytest.mark.slow
def test_an_online_run_opens_the_window_at_its_switch(db: Database) -> None:
    """The online mode: old code reads the legacy columns until the switch, the window's
    views from the switch's commit on; the window shows the columns of before expand."""
    with production(db, NO_STATUSES) as prod:
        with psycopg.connect(old_url(db, prod), autocommit=True) as old:
            before = old.execute(OLD_READ).fetchall()
            columns = old.execute("SELECT * FROM leads LIMIT 0").description
        pipeline = db.execute(PIPELINE)
        errors: list[BaseException] = []
        done = threading.Event()

        def keep_reading() -> None:
            with psycopg.connect(old_url(db, prod), autocommit=True) as conn:
                while not done.is_set():
                    try:
                        conn.execute(OLD_READ).fetchall()
                    except psycopg.Error as exc:
                        errors.append(exc)
                        return

        reader = threading.Thread(target=keep_reading, daemon=True)
        reader.start()
        up, report = run_json(
            db, "db", "migrate", "--online", "--target", "001", "--compat-window",
            "--rebuild-dependents",
        )  # fmt: skip
        done.set()
        reader.join(timeout=30)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "applied online" in report["outcome"], report
        assert not errors, errors
        assert f"recreated view public.sales_pipeline on {WINDOW}_definer" in report["compat"]
        assert db.execute(PIPELINE) == pipeline
        with psycopg.connect(old_url(db, prod), autocommit=True) as old:
            assert old.execute(OLD_READ).fetchall() == before
            # the pre-001 columns, in their order: none of those expand added
            after = old.execute("SELECT * FROM leads LIMIT 0").description
            assert [c.name for c in after or []] == [c.name for c in columns or []]
            lead, client = old_code_round(old)
        assert db.scalar(
            "SELECT converted_to_client_id FROM leads WHERE id = %s AND is_converted", (lead,)
        ) == uuid.UUID(client)
        assert f"window {WINDOW} open" in db.cli("db", "status").stdout


@pytest.mark.slow
def test_a_window_cannot_be_asked_of_an_online_run_started_without_it(db: Database) -> None:
    db.execute(trusted((MIGRATIONS / "000_original_schema.sql").read_text()))
    db.execute("INSERT INTO leads (first_name, email) VALUES ('A', 'a@example.org')")
    # An online run killed in its backfill: its state recorded, no window asked.
    state = kill_at(db, "phase:backfill:clients", "--target", "001")
    assert state == "backfill:clients"
    refused = db.cli("db", "migrate", "--online", "--target", "001", "--compat-window")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "started without --compat-window" in refused.stderr
    assert db.scalar("SELECT phase FROM aicrm_online_migration") == state
    # Its advice, followed: resume without the window.
    done = db.cli("db", "migrate", "--online", "--target", "001")
    assert done.returncode == 0, done.stdout + done.stderr
    assert db.scalar("SELECT to_regclass('aicrm_online_migration')") is None
