"""A "production-shaped" CRM database at version 000, for the tests of issue #12.

A lab database has one superuser and nothing built on the CRM's tables. A real one
has an application role with least privilege, reports built on the old columns, and
its own statuses. :func:`build` makes such a database in a given (empty) test
database, with data, and :func:`production` wraps it with the clean-up of its roles.

What it holds (each part can be left out, see :class:`Shape`):

* the original schema (000, no ledger: the next ``aicrm db migrate`` records the
  baseline), owned by the test's superuser;
* an application role ``crm_app_<suffix>`` (LOGIN, no superuser) with ``SELECT,
  INSERT, UPDATE`` on ``leads, clients, contacts``;
* a view ``sales_pipeline`` over ``leads.client_id`` (commented, readable by the
  application role);
* a materialized view ``client_origins`` over ``clients.converted_from_lead_id``
  (commented, readable by the application role);
* an SQL function ``lead_client(uuid)``: ``SELECT client_id FROM leads WHERE id = $1``;
* row-level security on ``leads``: the application role sees every lead but those
  whose ``source`` is ``'confidential'`` (a policy on a column the migrations keep);
* custom statuses: leads in ``nurturing``, ``won`` and ``demo_scheduled`` beside the
  default ones;
* data: 6 leads (2 converted on both legacy sides, one confidential), 2 clients,
  3 contacts.

Roles are cluster-wide: their names carry a random suffix per test, and
:func:`drop_roles` (called by :func:`production`) removes them, with what they own
and were granted in the test database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tests.conftest import Database
from tests.support import MIGRATIONS

SALES_PIPELINE = """
CREATE VIEW sales_pipeline AS
SELECT l.id, l.email, l.status, l.client_id, c.name AS client_name
FROM leads AS l
LEFT JOIN clients AS c ON c.id = l.client_id
"""

CLIENT_ORIGINS = """
CREATE MATERIALIZED VIEW client_origins AS
SELECT c.id, c.name, c.converted_from_lead_id, l.source AS lead_source
FROM clients AS c
LEFT JOIN leads AS l ON l.id = c.converted_from_lead_id
"""

LEAD_CLIENT = """
CREATE FUNCTION lead_client(lead uuid) RETURNS uuid
LANGUAGE sql STABLE AS $$
SELECT client_id FROM leads WHERE id = $1
$$
"""

RLS_POLICY = """
ALTER TABLE leads ENABLE ROW LEVEL SECURITY;
CREATE POLICY leads_not_confidential ON leads FOR ALL TO {role}
    USING (source IS DISTINCT FROM 'confidential')
    WITH CHECK (source IS DISTINCT FROM 'confidential')
"""

CUSTOM_STATUSES = ("nurturing", "won", "demo_scheduled")


@dataclass(frozen=True)
class Shape:
    """Which parts to build (all by default)."""

    view: bool = True
    materialized_view: bool = True
    function: bool = True
    policy: bool = True
    custom_statuses: bool = True


@dataclass
class Production:
    """What :func:`build` made: the role names and the ids of the data."""

    suffix: str
    app_role: str
    shape: Shape
    leads: dict[str, str] = field(default_factory=dict)  # label -> id
    clients: dict[str, str] = field(default_factory=dict)
    contacts: dict[str, str] = field(default_factory=dict)

    @property
    def roles(self) -> list[str]:
        return [self.app_role]

    def app_url(self, db: Database) -> str:
        """The test database's URL, logging in as the application role."""
        return psycopg.conninfo.make_conninfo(db.url, user=self.app_role)

    def app_connect(self, db: Database, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.app_url(db), **kwargs)


def build(db: Database, shape: Shape | None = None, suffix: str | None = None) -> Production:
    """Build the production-shaped database (see the module docstring) in ``db``,
    which must be empty. Returns the names and ids; call :func:`drop_roles` after."""
    shape = shape or Shape()
    suffix = suffix or uuid.uuid4().hex[:8]
    prod = Production(suffix, f"crm_app_{suffix}", shape)
    app = sql.Identifier(prod.app_role)
    with db.connect(autocommit=True) as conn:
        conn.execute((MIGRATIONS / "000_original_schema.sql").read_bytes())
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(app))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(app))
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE ON leads, clients, contacts TO {}").format(app)
        )
        _data(conn, prod)
        if shape.view:
            conn.execute(SALES_PIPELINE)
            conn.execute("COMMENT ON VIEW sales_pipeline IS 'Leads and the client they became.'")
            conn.execute(sql.SQL("GRANT SELECT ON sales_pipeline TO {}").format(app))
        if shape.materialized_view:
            conn.execute(CLIENT_ORIGINS)
            conn.execute(
                "COMMENT ON MATERIALIZED VIEW client_origins IS 'Where each client came from.'"
            )
            conn.execute(sql.SQL("GRANT SELECT ON client_origins TO {}").format(app))
        if shape.function:
            conn.execute(LEAD_CLIENT)
        if shape.policy:
            conn.execute(sql.SQL(RLS_POLICY).format(role=app))
    return prod


def _data(conn: psycopg.Connection[Any], prod: Production) -> None:
    statuses = ["new", "contacted", "qualified"]
    if prod.shape.custom_statuses:
        statuses = list(CUSTOM_STATUSES)
    for label, source, status in [
        ("open_1", "web", statuses[0]),
        ("open_2", "referral", statuses[1]),
        ("open_3", "web", statuses[2]),
        ("confidential", "confidential", "new"),
        ("converted_1", "web", "qualified"),
        ("converted_2", "event", "qualified"),
    ]:
        prod.leads[label] = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO leads (id, first_name, email, source, status) VALUES (%s, %s, %s, %s, %s)",
            (prod.leads[label], label, f"{label}@example.org", source, status),
        )
    for n in (1, 2):
        client = prod.clients[f"client_{n}"] = str(uuid.uuid4())
        lead = prod.leads[f"converted_{n}"]
        conn.execute(
            "INSERT INTO clients (id, name, converted_from_lead_id) VALUES (%s, %s, %s)",
            (client, f"Client {n}", lead),
        )
        conn.execute("UPDATE leads SET client_id = %s WHERE id = %s", (client, lead))
    for label, lead_label, client_label in [
        ("of_open_1", "open_1", None),
        ("of_client_1", None, "client_1"),
        ("of_client_2", None, "client_2"),
    ]:
        prod.contacts[label] = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO contacts (id, lead_id, client_id, email) VALUES (%s, %s, %s, %s)",
            (
                prod.contacts[label],
                prod.leads[lead_label] if lead_label else None,
                prod.clients[client_label] if client_label else None,
                f"{label}@example.org",
            ),
        )


def drop_roles(db: Database, roles: list[str]) -> None:
    """Drop the fixture's roles: what they own and were granted in ``db`` first."""
    with db.connect(autocommit=True) as conn:
        for role in roles:
            name = sql.Identifier(role)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if exists:
                conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(name))
                conn.execute(sql.SQL("DROP ROLE {}").format(name))


@contextmanager
def production(db: Database, shape: Shape | None = None) -> Iterator[Production]:
    """:func:`build` in ``db``, and its roles dropped afterwards (even on failure)."""
    prod: Production | None = None
    suffix = uuid.uuid4().hex[:8]
    try:
        prod = build(db, shape, suffix)
        yield prod
    finally:
        drop_roles(db, [f"crm_app_{suffix}"])
