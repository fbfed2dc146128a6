"""Privileges carry over (migration 009, docs/least-privilege.md): a non-superuser
owner migrates a legacy database to head; an application role holding only its
original grants on leads, clients and contacts then does every CRM operation; a
role under row-level security sees only its rows through the views; and the
definer functions cannot be used to write history directly."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.conftest import Database
from tests.support import MIGRATIONS


@dataclass
class Roles:
    """Cluster-wide roles with a random suffix: the owner that migrates, and others."""

    db: Database
    owner: str
    app: str
    reader: str

    def url(self, role: str) -> str:
        return make_conninfo(self.db.url, user=role)

    def cli(self, role: str, *args: str) -> Any:
        return self.db.cli(*args, env={"DATABASE_URL": self.url(role)})

    def json(self, role: str, *args: str) -> Any:
        result = self.cli(role, *args, "--json")
        assert result.returncode == 0, (args, result.stderr)
        return json.loads(result.stdout)

    def execute(
        self,
        role: str,
        query: LiteralString | sql.SQL | sql.Composed,
        params: tuple[Any, ...] | None = None,
    ) -> list[Any]:
        with psycopg.connect(self.url(role), autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def _admin(db: Database, statement: sql.Composed) -> None:
    with db.connect(autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture
def roles(db: Database) -> Iterator[Roles]:
    suffix = uuid.uuid4().hex[:8]
    found = Roles(db, f"aicrm_owner_{suffix}", f"aicrm_app_{suffix}", f"aicrm_reader_{suffix}")
    for role in (found.owner, found.app, found.reader):
        _admin(db, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    _admin(
        db,
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(db.name), sql.Identifier(found.owner)
        ),
    )
    # The schema belongs to the database's owner (PostgreSQL 15+: pg_database_owner).
    _admin(db, sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(found.owner)))
    try:
        yield found
    finally:
        with db.connect(autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(db.name))
            )
            conn.execute("ALTER SCHEMA public OWNER TO pg_database_owner")
            for role in (found.owner, found.app, found.reader):
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(db.server.admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name))
            )
            for role in (found.owner, found.app, found.reader):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def legacy_as_owner(roles: Roles) -> dict[str, str]:
    """The original schema created by the owner, a few leads (web and ads, one
    converted both ways), and the application's usual grants."""
    ids = {name: str(uuid.uuid4()) for name in ("open", "web2", "ads", "won", "client")}
    with psycopg.connect(roles.url(roles.owner), autocommit=True) as conn:
        conn.execute((MIGRATIONS / "000_original_schema.sql").read_bytes())
        for key, source in (("open", "web"), ("web2", "web"), ("ads", "ads"), ("won", "web")):
            conn.execute(
                "INSERT INTO leads (id, email, source) VALUES (%s, %s, %s)",
                (ids[key], f"{key}@example.org", source),
            )
        conn.execute(
            "INSERT INTO clients (id, name, converted_from_lead_id) VALUES (%s, 'Won Ltd', %s)",
            (ids["client"], ids["won"]),
        )
        conn.execute("UPDATE leads SET client_id = %s WHERE id = %s", (ids["client"], ids["won"]))
        conn.execute(
            sql.SQL(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON leads, clients, contacts TO {}"
            ).format(sql.Identifier(roles.app))
        )
    return ids


def migrate_as_owner(roles: Roles) -> None:
    result = roles.cli(roles.owner, "db", "migrate")
    assert result.returncode == 0, result.stderr
    rows = roles.execute(roles.owner, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    assert rows == [(False,)]


@pytest.mark.slow
def test_app_role_keeps_every_crm_operation(roles: Roles) -> None:
    ids = legacy_as_owner(roles)
    migrate_as_owner(roles)
    app = roles.app
    # Create, update, convert, merge, delete leads; contacts; reports; import.
    lead = roles.json(app, "leads", "create", "--email", "new@example.org", "--source", "web")
    roles.json(app, "leads", "update", lead["id"], "--status", "contacted")
    twin = roles.json(app, "leads", "create", "--email", "twin@example.org", "--first-name", "Twin")
    roles.json(app, "leads", "update", twin["id"], "--status", "qualified")
    merged = roles.json(app, "leads", "merge", lead["id"], twin["id"])
    assert merged["kept"]["first_name"] == "Twin"
    contact = roles.json(app, "contacts", "create", "--lead", lead["id"], "--email", "c@x.org")
    converted = roles.json(app, "leads", "convert", lead["id"])
    assert converted["client_id"]
    assert roles.json(app, "contacts", "show", contact["id"])["client_id"] == converted["client_id"]
    # The guard of converted leads (SECURITY INVOKER: it reads no table) refuses for
    # the application as for anyone: read-only, exit 5, not a permission error.
    guarded = roles.cli(app, "leads", "update", lead["id"], "--first-name", "Changed")
    assert guarded.returncode == 5, guarded.stderr
    assert "read-only" in guarded.stderr
    doomed = roles.json(app, "leads", "create", "--email", "doomed@example.org")
    assert roles.cli(app, "leads", "delete", doomed["id"]).returncode == 0
    history = roles.json(app, "leads", "history", lead["id"])
    text = json.dumps(history)
    assert "twin@example.org" in text  # the merged lead's history moved to the kept one
    assert roles.json(app, "report", "conversions")
    assert roles.json(app, "report", "client-history", converted["client_id"])
    funnel = {s["status"]: s for s in roles.json(app, "report", "funnel")}
    assert funnel["converted"]["current"] == 2
    csv = roles.db.workdir / "leads.csv"
    csv.write_text("email,source,status\nimp1@example.org,fair,new\nimp2@example.org,fair,lost\n")
    imported = roles.json(app, "leads", "import", str(csv))
    assert imported["imported"] == 2, imported
    # The history recorded it all, as the application's role.
    actors = roles.execute(roles.owner, "SELECT DISTINCT operation FROM crm_history")
    assert {r[0] for r in actors} == {"insert", "update", "delete"}
    assert roles.execute(app, "SELECT count(*) FROM leads WHERE id = %s", (ids["won"],)) == [(1,)]


@pytest.mark.slow
def test_definer_functions_cannot_be_abused(roles: Roles) -> None:
    ids = legacy_as_owner(roles)
    migrate_as_owner(roles)
    app = roles.app
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        roles.execute(
            app,
            "INSERT INTO crm_history (table_name, row_id, operation, actor, "
            "changes) VALUES ('leads', gen_random_uuid(), 'insert', 'x', '{}')",
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        roles.execute(app, "UPDATE crm_history SET actor = 'someone else'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        roles.execute(app, "SELECT aicrm_history_update_row()")
    # A merge record that does not delete the merged lead is refused at commit, so
    # the trigger cannot be used to move a lead's history elsewhere.
    with pytest.raises(psycopg.errors.CheckViolation, match="was not deleted"):
        roles.execute(
            app,
            "INSERT INTO lead_merges (kept_lead_id, merged_lead_id, merged_row) "
            "VALUES (%s, %s, '{}')",
            (ids["open"], ids["web2"]),
        )
    # A temporary table cannot stand in for crm_history (pg_temp is searched last).
    with psycopg.connect(roles.url(app), autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TEMP TABLE crm_history (LIKE leads)")
        conn.execute("INSERT INTO leads (email) VALUES ('temp@example.org')")
    recorded = roles.execute(
        roles.owner,
        "SELECT count(*) FROM crm_history WHERE operation = 'insert' "
        "AND changes ->> 'email' = 'temp@example.org'",
    )
    assert recorded == [(1,)]


@pytest.mark.slow
def test_row_level_security_holds_through_the_views(roles: Roles) -> None:
    if roles.db.server.major < 15:
        pytest.skip("security_invoker views need PostgreSQL 15")
    legacy_as_owner(roles)
    reader = sql.Identifier(roles.reader)
    with psycopg.connect(roles.url(roles.owner), autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON leads, clients, contacts TO {}").format(reader))
        conn.execute("ALTER TABLE leads ENABLE ROW LEVEL SECURITY")
        conn.execute(
            sql.SQL(
                "CREATE POLICY web_only ON leads FOR SELECT TO {} USING (source = 'web')"
            ).format(reader)
        )
        conn.execute(
            sql.SQL("CREATE POLICY app_all ON leads TO {} USING (true) WITH CHECK (true)").format(
                sql.Identifier(roles.app)
            )
        )
    migrate_as_owner(roles)
    summary = roles.execute(roles.reader, "SELECT source, total_leads FROM lead_conversion_summary")
    assert dict(summary) == {"web": 3}  # the ads lead is hidden from this role
    assert roles.execute(roles.reader, "SELECT count(*) FROM client_lead_history") == [(1,)]
    owner_view = roles.execute(roles.owner, "SELECT sum(total_leads) FROM lead_conversion_summary")
    assert owner_view == [(4,)]
    # With row-level security on leads, the history (which would show hidden rows) is
    # not handed out; the statuses are.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        roles.execute(roles.reader, "SELECT count(*) FROM crm_history")
    assert roles.execute(roles.reader, "SELECT count(*) FROM lead_statuses") == [(6,)]
    # The application role still writes (history by the definer functions).
    roles.execute(roles.app, "INSERT INTO leads (email, source) VALUES ('rls@x.org', 'ads')")
    assert roles.execute(roles.reader, "SELECT count(*) FROM leads") == [(3,)]


@pytest.mark.slow
def test_views_readable_only_by_roles_that_read_their_tables(roles: Roles) -> None:
    legacy_as_owner(roles)
    with psycopg.connect(roles.url(roles.owner), autocommit=True) as conn:
        # The reader may read leads only: not client_lead_history (leads and clients).
        conn.execute(sql.SQL("GRANT SELECT ON leads TO {}").format(sql.Identifier(roles.reader)))
    migrate_as_owner(roles)
    assert roles.execute(roles.reader, "SELECT count(*) FROM lead_conversion_summary")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        roles.execute(roles.reader, "SELECT count(*) FROM client_lead_history")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        roles.execute(roles.reader, "INSERT INTO leads (email) VALUES ('no@x.org')")
