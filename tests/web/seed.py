"""Sample data for the dashboard tests and its screenshot: a small sales team's CRM."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aicrm import apikeys
from aicrm.ai.annotations import annotate
from aicrm.crm import activities, contacts, conversion, leads, session, store, users
from aicrm.crm.records import Lead
from aicrm.db import Connection

PEOPLE = [
    # first, last, company, source, status, score, days ago
    ("Ada", "Lovelace", "Analytical Engines Ltd", "referral", "qualified", 0.91, 3),
    ("Grace", "Hopper", "Compiler Works", "web", "contacted", 0.84, 5),
    ("Alan", "Turing", "Bletchley Analytics", "event", "qualified", 0.78, 8),
    ("Katherine", "Johnson", "Orbital Mechanics Inc", "partner", "new", 0.72, 1),
    ("Edsger", "Dijkstra", "Shortest Path BV", "web", "contacted", 0.66, 12),
    ("Barbara", "Liskov", "Substitution Systems", "referral", "new", 0.63, 2),
    ("Donald", "Knuth", "Literate Press", "ads", "unqualified", 0.31, 40),
    ("Margaret", "Hamilton", "Apollo Software", "event", "qualified", 0.88, 20),
    ("Claude", "Shannon", "Information Theory Co", "web", "new", None, 0),
    ("Frances", "Allen", "Optimizing Compilers", "partner", "contacted", 0.57, 16),
    ("John", "Backus", "Formula Translation", "ads", "lost", 0.22, 75),
    ("Radia", "Perlman", "Spanning Tree Networks", "referral", "new", 0.69, 4),
    ("Ken", "Thompson", "Unix Labs", "web", "qualified", 0.81, 30),
    ("Lynn", "Conway", "VLSI Design", "event", "new", None, 6),
]
SUMMARY = "Evaluating a CRM for a 40-person sales team; asked for a demo and pricing."


def scored(score: float, source: str, status: str, days: int) -> dict[str, object]:
    """What the lead-scoring annotator writes: score, tier and the top factors, in its
    compact form ([feature, value, contribution], largest effect first)."""
    tier = "A" if score >= 0.85 else "B" if score >= 0.7 else "C" if score >= 0.5 else "D"
    factors: list[list[object]] = [
        ["source", source, {"referral": 0.92, "event": 0.41, "partner": 0.35}.get(source, -0.18)],
        ["reached_qualified", 1.0 if status == "qualified" else 0.0,
         0.74 if status == "qualified" else -0.21],
        ["age_days", float(days), round(0.3 - 0.02 * days, 3)],
    ]  # fmt: skip
    factors.sort(key=lambda f: -abs(float(f[2])))  # type: ignore[arg-type]
    return {"score": score, "tier": tier, "horizon_days": 90, "method": "model",
            "factors": factors}  # fmt: skip


@dataclass
class Seeded:
    """What the seed made: keys by scope, and the leads by last name."""

    read_token: str
    write_token: str
    leads: dict[str, Lead]


def seed(conn: Connection, now: datetime | None = None) -> Seeded:
    """Fill an empty CRM database: leads with contacts and scores, a few conversions
    (spread over the last months), and a read and a write API key."""
    now = now or datetime.now(UTC)
    made: dict[str, Lead] = {}
    with session.transaction(conn, "maria.sales"):
        for first, last, company, source, _status, score, days in PEOPLE:
            domain = company.split()[0].lower() + ".example"
            lead = store.insert(conn, Lead, {
                "first_name": first, "last_name": last, "company_name": company,
                "email": f"{first.lower()}@{domain}", "source": source, "status": "new",
                "ai_score": score, "ai_summary": SUMMARY if score and score > 0.8 else None,
                "attributes": {"industry": "software", "employees": 40 + 13 * days},
                "created_at": now - timedelta(days=days, hours=3),
            })  # fmt: skip
            contacts.create_contact(
                conn, lead_id=lead.id, first_name="Sam", last_name=f"{last}-Office",
                email=f"office@{domain}", title="Head of Operations",
            )  # fmt: skip
            made[last] = lead
    with session.transaction(conn, "maria.sales"):  # a later change, for the history
        for _first, last, _company, _source, status, _score, _days in PEOPLE:
            if status != "new":
                made[last] = leads.update_lead(conn, made[last].id, {"status": status})
    for _first, last, _company, source, status, score, days in PEOPLE:
        if score is not None:
            annotate(
                conn, "leads", made[last].id, "lead_scoring", model="lead_scoring",
                version="ls-20261101-080000-demo", confidence=0.82,
                values=scored(score, source, status, days), actor="lead_scoring",
            )  # fmt: skip
    with session.transaction(conn, "maria.sales"):  # owners, activities, tasks (issue #17)
        maria = users.add_user(conn, "Maria Sales", "maria@example.com")
        for last in ("Lovelace", "Hopper", "Hamilton"):
            users.assign(conn, "leads", made[last].id, maria.id)
            made[last] = leads.get_lead(conn, made[last].id)
        activities.add_activity(
            conn, kind="call", subject="Discovery call", lead_id=made["Lovelace"].id,
            body="Wants a demo for 40 sellers; budget approved in Q1.",
        )  # fmt: skip
        for last, subject, days in (("Lovelace", "Send pricing", 2), ("Hopper", "Book demo", 1)):
            activities.add_activity(
                conn, kind="task", subject=subject, lead_id=made[last].id, assignee=maria.id,
                due_at=now + timedelta(days=days),
            )  # fmt: skip
        activities.add_activity(
            conn, kind="meeting", subject="Kick-off", lead_id=made["Hamilton"].id
        )
    for last in ("Hamilton", "Thompson", "Turing"):
        conversion.convert_lead(conn, made[last].id, actor="maria.sales")
        made[last] = leads.get_lead(conn, made[last].id)
    _, read_token = apikeys.create_key(conn, "viewer", "read")
    _, write_token = apikeys.create_key(conn, "maria.sales", "write", maria.id)
    conn.commit()
    return Seeded(read_token, write_token, made)
