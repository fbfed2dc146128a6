"""Building a legacy CRM database by hand (schema 000, no ledger), anomalies included,
and reading its references back: the helpers of the migration 001 tests.

A reference is ``(table, row id, column, referenced id)``, all text, for the legacy
columns ``leads.client_id``, ``clients.converted_from_lead_id``, ``contacts.lead_id``
and ``contacts.client_id``.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from aicrm.db import tools
from tests.conftest import Database
from tests.support import MIGRATIONS

Ref = tuple[str, str, str, str]

T0 = datetime(2024, 1, 1, tzinfo=UTC)

LEGACY_REFERENCES = """
SELECT 'leads', id::text, 'client_id', client_id::text FROM leads WHERE client_id IS NOT NULL
UNION ALL
SELECT 'clients', id::text, 'converted_from_lead_id', converted_from_lead_id::text
FROM clients WHERE converted_from_lead_id IS NOT NULL
UNION ALL
SELECT 'contacts', id::text, 'lead_id', lead_id::text FROM contacts WHERE lead_id IS NOT NULL
UNION ALL
SELECT 'contacts', id::text, 'client_id', client_id::text FROM contacts WHERE client_id IS NOT NULL
"""

# What the structure of 001 expresses: a conversion stands for both legacy sides, a
# contact's remaining link for itself, and a contact of a client for the lead links
# of the leads converted to that client.
EXPRESSED_REFERENCES = """
SELECT 'leads', id::text, 'client_id', converted_to_client_id::text
FROM leads WHERE converted_to_client_id IS NOT NULL
UNION ALL
SELECT 'clients', converted_to_client_id::text, 'converted_from_lead_id', id::text
FROM leads WHERE converted_to_client_id IS NOT NULL
UNION ALL
SELECT 'contacts', id::text, 'lead_id', lead_id::text FROM contacts WHERE lead_id IS NOT NULL
UNION ALL
SELECT 'contacts', id::text, 'client_id', client_id::text FROM contacts WHERE client_id IS NOT NULL
UNION ALL
SELECT 'contacts', k.id::text, 'lead_id', l.id::text
FROM contacts AS k JOIN leads AS l ON l.converted_to_client_id = k.client_id
"""

ARCHIVED_REFERENCES = """
SELECT table_name, row_id::text, column_name, referenced_id::text FROM migration_001_link_archive
"""

REASON_COUNTS = """
SELECT split_part(reason, ':', 1), count(*) FROM {table} GROUP BY 1
"""


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def new_id() -> str:
    return str(uuid.uuid4())


def ordered_ids(count: int) -> list[str]:
    """``count`` new uuids in ascending order (for 'then lowest id' ties)."""
    return sorted(new_id() for _ in range(count))


class Legacy:
    """A legacy database (the original schema without a ledger) and ways to fill it.

    The test connection is a superuser's, so :meth:`unchecked` can write rows the
    foreign keys would refuse, the way restores with triggers disabled leave them.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conn: psycopg.Connection[Any] = db.connect(autocommit=True)
        self.conn.execute((MIGRATIONS / "000_original_schema.sql").read_bytes())
        self._leads = 0

    def close(self) -> None:
        self.conn.close()

    def execute(
        self,
        query: LiteralString | sql.SQL | sql.Composed,
        params: tuple[object, ...] | None = None,
    ) -> None:
        self.conn.execute(query, params)

    @contextmanager
    def unchecked(self) -> Iterator[None]:
        """Writes in here skip the foreign keys (session_replication_role = replica)."""
        self.conn.execute("SET session_replication_role = replica")
        try:
            yield
        finally:
            self.conn.execute("RESET session_replication_role")

    def lead(
        self,
        *,
        created: datetime | None = None,
        source: str | None = "web",
        email: str | None = None,
        client: str | None = None,
        id: str | None = None,
    ) -> str:
        self._leads += 1
        lead_id = id or new_id()
        self.conn.execute(
            "INSERT INTO leads (id, email, source, client_id, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                lead_id,
                email or f"lead{self._leads}@example.org",
                source,
                client,
                created or day(self._leads),
                day(500),
            ),
        )
        return lead_id

    def client(
        self,
        *,
        created: datetime | None = None,
        lead: str | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> str:
        client_id = id or new_id()
        self.conn.execute(
            "INSERT INTO clients (id, name, converted_from_lead_id, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (client_id, name or f"client {client_id[:8]}", lead, created or day(100), day(500)),
        )
        return client_id

    def set_lead_client(self, lead: str, client: str | None) -> None:
        self.conn.execute("UPDATE leads SET client_id = %s WHERE id = %s", (client, lead))

    def contact(self, *, lead: str | None = None, client: str | None = None) -> str:
        contact_id = new_id()
        self.conn.execute(
            "INSERT INTO contacts (id, lead_id, client_id, email, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (contact_id, lead, client, f"contact-{contact_id[:8]}@example.org", day(1), day(500)),
        )
        return contact_id

    def converted(
        self, *, lead_created: datetime | None = None, client_created: datetime | None = None
    ) -> tuple[str, str]:
        """A clean conversion: both legacy sides name each other."""
        lead = self.lead(created=lead_created)
        client = self.client(lead=lead, created=client_created)
        self.set_lead_client(lead, client)
        return lead, client


def legacy_references(db: Database) -> set[Ref]:
    return {tuple(map(str, row)) for row in db.execute(LEGACY_REFERENCES)}  # type: ignore[misc]


def expressed_references(db: Database) -> set[Ref]:
    return {tuple(map(str, row)) for row in db.execute(EXPRESSED_REFERENCES)}  # type: ignore[misc]


def archived_references(db: Database) -> set[Ref]:
    return {tuple(map(str, row)) for row in db.execute(ARCHIVED_REFERENCES)}  # type: ignore[misc]


def reason_counts(db: Database, table: str) -> Counter[str]:
    """Rows of one of 001's tables by reason category (the part before the colon)."""
    query = REASON_COUNTS.format(table=table)
    return Counter({str(name): int(str(n)) for name, n in db.execute(query)})


def run_json(
    db: Database, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``aicrm ARGS --json``; the report it printed (also on failure)."""
    result = db.cli(*args, "--json", env=env, timeout=timeout)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report: {result.stdout!r} {result.stderr!r}") from None
    return result, report


def findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's integrity findings of 001, by check name."""
    return {f["check"]: f for f in report["findings"] if f["migration"].startswith("001_")}


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {name: f["count"] for name, f in findings(report).items()}


def pg_dump_data_only(db: Database) -> subprocess.CompletedProcess[str]:
    pg_dump = tools.find("pg_dump").path
    return subprocess.run(
        [str(pg_dump), "--data-only", "--no-password", "--dbname", db.url],
        capture_output=True,
        text=True,
        check=False,
    )


def trigger_modes(db: Database) -> dict[str, str]:
    """User triggers of leads, clients and contacts: ``table.trigger`` -> tgenabled."""
    rows = db.execute(
        "SELECT c.relname || '.' || g.tgname, g.tgenabled::text FROM pg_trigger g "
        "JOIN pg_class c ON c.oid = g.tgrelid "
        "WHERE c.relname IN ('leads', 'clients', 'contacts') AND NOT g.tgisinternal"
    )
    return {str(name): str(mode) for name, mode in rows}


def updated_at(db: Database) -> dict[str, datetime]:
    """Every row's updated_at in the three tables, by ``table:id``."""
    rows = db.execute(
        "SELECT 'leads:' || id, updated_at FROM leads UNION ALL "
        "SELECT 'clients:' || id, updated_at FROM clients UNION ALL "
        "SELECT 'contacts:' || id, updated_at FROM contacts"
    )
    return {str(key): value for key, value in rows}


@dataclass
class Every:
    """A legacy database holding every anomaly category of 001 at once: the ids by
    role, and the findings, archive rows and moved contacts expected of it."""

    ids: dict[str, str]
    findings: dict[str, int]
    archive: dict[str, int]
    moved: dict[str, int]
    legacy_values: dict[str, int]

    def __getitem__(self, name: str) -> str:
        return self.ids[name]


def build_every_anomaly(db: Database, *, blocking: bool = True) -> Every:
    """Fill ``db`` (empty) with the original schema and one or more rows of every
    resolvable anomaly category, and, with ``blocking``, every blocking one."""
    legacy = Legacy(db)
    ids: dict[str, str] = {}
    try:
        # a clean conversion, both sides naming each other
        ids["L1"], ids["C1"] = legacy.converted(lead_created=day(10), client_created=day(40))
        # a lead two clients claim: the earlier client (C2b) wins
        ids["L2"] = legacy.lead(created=day(20))
        ids["C2a"] = legacy.client(lead=ids["L2"], created=day(120))
        ids["C2b"] = legacy.client(lead=ids["L2"], created=day(110))
        legacy.set_lead_client(ids["L2"], ids["C2b"])
        # two claims at the same moment: the lower id wins; client_id empty
        ids["L3"] = legacy.lead(created=day(30))
        low, high = ordered_ids(2)
        ids["C3low"] = legacy.client(lead=ids["L3"], created=day(130), id=low)
        ids["C3high"] = legacy.client(lead=ids["L3"], created=day(130), id=high)
        # client_id disagreeing with the claiming client (C5 converts L5 cleanly)
        ids["L5"], ids["C5"] = legacy.converted(lead_created=day(50), client_created=day(150))
        ids["L4"] = legacy.lead(created=day(40), client=ids["C5"])
        ids["C4"] = legacy.client(lead=ids["L4"], created=day(140))
        # conversion recorded only on the client's side
        ids["L6"] = legacy.lead(created=day(60))
        ids["C6"] = legacy.client(lead=ids["L6"], created=day(160))
        # only on the lead's side, the lead created after the client
        ids["C7"] = legacy.client(created=day(70))
        ids["L7"] = legacy.lead(created=day(75), client=ids["C7"])
        # a client two leads convert to: L8 both sides, L9 on its side only
        ids["L8"], ids["C8"] = legacy.converted(lead_created=day(80), client_created=day(180))
        ids["L9"] = legacy.lead(created=day(90), client=ids["C8"])
        # a lead never converted
        ids["L10"] = legacy.lead(created=day(100), source=None)
        # contacts with both parents: K1's lead converted to its client, K2's and K3's not
        ids["K1"] = legacy.contact(lead=ids["L1"], client=ids["C1"])
        ids["K2"] = legacy.contact(lead=ids["L6"], client=ids["C1"])
        ids["K3"] = legacy.contact(lead=ids["L10"], client=ids["C1"])
        # plain contacts
        ids["K4"] = legacy.contact(lead=ids["L10"])
        ids["K5"] = legacy.contact(client=ids["C5"])
        findings = {
            "lead_claimed_by_several_clients": 2,  # C2a, C3high
            "lead_client_id_disagrees": 1,  # L4
            "lead_converted_only_on_client_side": 2,  # L3, L6
            "lead_converted_only_on_lead_side": 2,  # L7, L9
            "client_converted_from_several_leads": 1,  # C8
            "contact_with_both_parents": 3,  # K1, K2, K3
            "contact_lead_link_archived": 2,  # K2, K3
        }
        archive = {
            "lead_claimed_by_several_clients": 2,
            "lead_client_id_disagrees": 1,
            "contact_lead_link_archived": 2,
        }
        moved: dict[str, int] = {}
        legacy_values = {
            "lead_converted_only_on_client_side": 2,  # L3, L6
            "client_converted_only_on_lead_side": 1,  # C7
            "client_converted_from_several_leads": 1,  # C8 named L8
            "contact_lead_implied_by_conversion": 1,  # K1
        }
        if blocking:
            with legacy.unchecked():
                ids["L11"] = legacy.lead(client=new_id())  # orphan, not converted
                ids["L12"] = legacy.lead(created=day(110), client=new_id())  # orphan ...
                ids["C12"] = legacy.client(lead=ids["L12"], created=day(200))  # ... claimed
                ids["C13"] = legacy.client(lead=new_id())
                ids["K6"] = legacy.contact(lead=new_id(), client=ids["C5"])
                ids["K7"] = legacy.contact(lead=ids["L10"], client=new_id())
                ids["K9"] = legacy.contact(lead=new_id(), client=new_id())
            ids["K8"] = legacy.contact()
            blocked = {
                "orphan_lead_client_id": 2,  # L11, L12
                "orphan_client_converted_from_lead_id": 1,  # C13
                "orphan_contact_lead_id": 2,  # K6, K9
                "orphan_contact_client_id": 2,  # K7, K9
                "contact_without_parent": 1,  # K8
                "contact_with_only_orphan_parents": 1,  # K9
            }
            findings.update(blocked)
            archive.update({k: v for k, v in blocked.items() if k.startswith("orphan_")})
            moved = {"contact_without_parent": 1, "contact_with_only_orphan_parents": 1}
        return Every(ids, findings, archive, moved, legacy_values)
    finally:
        legacy.close()


ROWS_AS_JSON = sql.SQL("SELECT to_jsonb(t)::text FROM {} AS t")


def rows_as_json(
    db: Database, tables: tuple[str, ...] = ("leads", "clients", "contacts")
) -> dict[str, list[str]]:
    """Every row of each table as JSON (keys sorted: independent of column order)."""
    return {
        table: sorted(str(row[0]) for row in db.execute(ROWS_AS_JSON.format(sql.Identifier(table))))
        for table in tables
    }


def foreign_keys(db: Database) -> set[tuple[str, str, str, bool]]:
    """Foreign keys of leads, clients and contacts: (table, name, definition, validated)."""
    rows = db.execute(
        "SELECT conrelid::regclass::text, conname, "
        "replace(pg_get_constraintdef(oid), ' NOT VALID', ''), convalidated "
        "FROM pg_constraint WHERE contype = 'f' "
        "AND conrelid IN ('leads'::regclass, 'clients'::regclass, 'contacts'::regclass)"
    )
    return {(str(t), str(n), str(d), bool(v)) for t, n, d, v in rows}
