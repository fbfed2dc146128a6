"""Small CRMs for the AI tests: hand-made leads with a known history, or generated ones."""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.conftest import REPO, Database

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)

# Runs the real CLI entry point with the AI commands registered the way the lead
# registers them (if main does not have them yet).
CLI = (
    "import sys\n"
    "from aicrm.cli import _ai as ai, main\n"
    "names = {g.name for g in main.app.registered_groups}\n"
    "if 'ai' not in names: main.app.add_typer(ai.ai_app, name='ai')\n"
    "if 'analyze' not in names: main.app.add_typer(ai.analyze_app, name='analyze')\n"
    "sys.exit(main.run(sys.argv[1:]))\n"
)


def cli(db: Database, *args: str) -> Any:
    import subprocess

    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        env=db.env,
        cwd=Path(db.workdir),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@dataclass
class L:
    """A hand-made lead: created ``age`` days before AS_OF; ``path`` is its status
    changes as (days after creation, new status); ``converted`` days after creation."""

    source: str | None
    age: float
    converted: float | None = None
    industry: str | None = None
    path: list[tuple[float, str]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    contacts: int = 0
    email: str | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def insert(conn: psycopg.Connection[Any], leads: list[L], as_of: datetime = AS_OF) -> None:
    """Insert leads, their clients, contacts and status history (no triggers' history)."""
    with conn.transaction():
        for lead in leads:
            created = as_of - timedelta(days=lead.age)
            attributes = dict(lead.attributes)
            if lead.industry is not None:
                attributes["industry"] = lead.industry
            statuses = [s for _d, s in lead.path]
            client = None
            conversion = None
            status = statuses[-1] if statuses else "new"
            if lead.converted is not None:
                client = uuid.uuid4()
                conversion = created + timedelta(days=lead.converted)
                conn.execute("INSERT INTO clients (id, name) VALUES (%s, %s)", (client, "Co"))
                status = "converted"
            conn.execute(
                "INSERT INTO leads (id, source, status, attributes, email, created_at, updated_at, "
                "converted_to_client_id, conversion_date, is_converted) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (lead.id, lead.source, status, Jsonb(attributes), lead.email, created, created,
                 client, conversion, client is not None),
            )  # fmt: skip
            previous = "new"
            path = list(lead.path)
            if lead.converted is not None:
                path.append((lead.converted, "converted"))
            for days, new in path:
                conn.execute(
                    "INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, "
                    "changes) VALUES ('leads', %s, 'update', %s, 'test', %s)",
                    (lead.id, created + timedelta(days=days), Jsonb({"status": [previous, new]})),
                )
                previous = new
            for k in range(lead.contacts):
                conn.execute(
                    "INSERT INTO contacts (lead_id, client_id, title, created_at) "
                    "VALUES (%s, %s, %s, %s)",
                    (None if client else lead.id, client, "CEO" if k == 0 else "Buyer", created),
                )
        conn.execute("DELETE FROM crm_history WHERE actor <> 'test'")


def generated(db: Database, leads: int, seed: int = 1) -> None:
    """A generated CRM (aicrm.sample.crm) whose history ends at AS_OF."""
    from aicrm.sample.crm import generate

    with db.connect() as conn:
        generate(conn, leads=leads, seed=seed, now=AS_OF)


__all__ = ["AS_OF", "CLI", "REPO", "L", "cli", "generated", "insert"]
