"""Custom lead statuses on the way to 008: ``--map-status OLD=NEW`` and the carry
through 002's fixed list (docs/custom-statuses.md).

Migration 002 (applied on real databases, so its file cannot change) adds the CHECK
``leads_status_known`` with six statuses; 008 replaces it with a table of statuses.
A legacy database whose open leads have statuses of their own (``nurturing``,
``demo_scheduled``) goes to 008 in one transaction like this:

1. :func:`prepare`, before the checks and the backup: the mappings are checked
   against the database (each OLD must be an open lead's status; NEW must not be
   ``converted``), and a run that would stop between 002 and 008 with unknown
   statuses left is refused (exit 3) with advice that works: migrate to 008 or
   later, or map them.
2. :func:`before_steps`, in the transaction, just before 002's steps (or 008's,
   when 002 is applied already): the mappings are applied to open leads; then the
   open leads whose status 002 would refuse are noted in the temporary table
   ``aicrm_status_carry`` (dropped at commit) and set to ``new``.
3. 008's SQL gives them their statuses back and seeds ``lead_statuses`` with every
   status found. Nothing outside the transaction ever sees the stand-in status.

User triggers on leads (``updated_at`` stampers, audit) stay quiet during both
updates: a mapping is the operator's decision, not an edit of each lead, and the
carry changes nothing in the end. aicrm's own history triggers (from 002 on) do
record a mapping made at 002 or later, as it is a real change of status.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from psycopg import sql

from aicrm.db import Connection
from aicrm.errors import IntegrityRefused, UsageError
from aicrm.migrate._report import Report, StepTiming
from aicrm.migrate.loader import Migration

DEFAULTS = ("new", "contacted", "qualified", "unqualified", "lost", "converted")
FIXED_BY = 2  # 002 adds the CHECK with the fixed list
DATA_FROM = 8  # 008 makes statuses data

# Open leads' statuses and counts; before 001 a lead is converted when it points at a
# client or a client points at it (001 resolves which, the closest we can say here).
OPEN_STATUSES_000 = """
SELECT l.status, count(*) FROM leads l
WHERE l.client_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM clients c WHERE c.converted_from_lead_id = l.id)
GROUP BY l.status ORDER BY l.status
"""
OPEN_STATUSES = """
SELECT status, count(*) FROM leads WHERE NOT is_converted GROUP BY status ORDER BY status
"""
LEADS_TABLE = "SELECT to_regclass('leads') IS NOT NULL"
USER_TRIGGERS = """
SELECT t.tgname, t.tgenabled FROM pg_trigger t
WHERE t.tgrelid = 'leads'::regclass AND NOT t.tgisinternal AND t.tgenabled <> 'D'
  AND t.tgname NOT LIKE 'aicrm\\_%'
ORDER BY t.tgname
"""
MAP = "UPDATE leads SET status = %s WHERE status = %s AND NOT is_converted"
CARRY = """
CREATE TEMP TABLE aicrm_status_carry ON COMMIT DROP AS
SELECT id AS lead_id, status FROM leads WHERE NOT is_converted AND status <> ALL(%s::text[])
"""
STAND_IN = "UPDATE leads l SET status = 'new' FROM aicrm_status_carry c WHERE l.id = c.lead_id"
MODES = {"A": sql.SQL("ALWAYS"), "R": sql.SQL("REPLICA"), "O": sql.SQL("")}


def parse(items: Sequence[str]) -> dict[str, str]:
    """``["nurturing=contacted", …]`` as a mapping. Raises :class:`UsageError` for an
    item without ``=``, an empty side, or an OLD named twice."""
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise UsageError(
                f"--map-status needs OLD=NEW (e.g. --map-status nurturing=contacted), not '{item}'."
            )
        if old in mapping:
            raise UsageError(f"--map-status maps '{old}' twice; give each old status once.")
        mapping[old] = new
    return mapping


def prepare(conn: Connection, version: int, plan: list[Migration], mapping: dict[str, str]) -> None:
    """Check the mappings and refuse a run that cannot keep the statuses found.

    ``version`` is the database's (-1 empty, 0 for the original schema). Raises
    :class:`UsageError` (exit 2) for a mapping that cannot apply and
    :class:`IntegrityRefused` (exit 3) when the run stops between 002 and 008 with
    open leads whose statuses 002's fixed list refuses."""
    versions = {m.version for m in plan}
    if FIXED_BY not in versions and DATA_FROM not in versions:
        if mapping:
            raise UsageError(
                "--map-status applies to a run that brings the database to 008 (statuses "
                f"as data); this run does not ({_plan(plan)}). To move the leads of one "
                "status to another now, use 'aicrm statuses remove OLD --into NEW'."
            )
        return
    row = conn.execute(LEADS_TABLE).fetchone()
    if not (row and row[0]):
        found: dict[str, int] = {}
    else:
        query = OPEN_STATUSES_000 if version <= 0 else OPEN_STATUSES
        found = {str(r[0]): int(r[1]) for r in conn.execute(query).fetchall()}
    reaches_data = DATA_FROM in versions
    for old, new in mapping.items():
        if old not in found:
            shown = ", ".join(found) or "none"
            raise UsageError(
                f"--map-status {old}={new}: no open lead has the status '{old}' (open leads' "
                f"statuses: {shown}). Check the spelling, or leave this mapping out."
            )
        if new == "converted":
            raise UsageError(
                f"--map-status {old}={new}: 'converted' is set only by converting a lead; map "
                f"'{old}' to an open or lost status (e.g. {old}=lost)."
            )
        if new in mapping:
            raise UsageError(
                f"--map-status {old}={new}: '{new}' is itself mapped to '{mapping[new]}'; map "
                f"'{old}' to the final status directly."
            )
        if not reaches_data and new not in DEFAULTS:
            raise UsageError(
                f"--map-status {old}={new}: '{new}' is not one of the statuses "
                f"{', '.join(DEFAULTS[:-1])}, the only ones before 008; migrate to 008 or "
                "later (leave out --target) to keep statuses of your own."
            )
    if FIXED_BY in versions and found.get("converted") and "converted" not in mapping:
        raise IntegrityRefused(
            f"{found['converted']:,} open lead(s) have the status 'converted' but no client "
            "they converted to; 002 requires 'converted' to mean converted. Nothing was "
            "changed. Give them the status they have in fact with --map-status "
            "converted=qualified (or another open or lost status); those that did convert "
            "can then be converted ('aicrm leads convert')."
        )
    left = {s: n for s, n in found.items() if s not in DEFAULTS and s not in mapping}
    if left and not reaches_data:
        shown = ", ".join(f"{s} ({n:,})" for s, n in left.items())
        example = " ".join(f"--map-status {s}=contacted" for s in left)
        raise IntegrityRefused(
            f"Open leads have statuses that {_plan(plan)} cannot hold (002 allows "
            f"{', '.join(DEFAULTS[:-1])}; 008 makes statuses data): {shown}. Nothing was "
            "changed. Migrate to 008 or later (leave out --target) to keep them as statuses "
            f"of their own, or map each to an allowed one: {example}."
        )


def before_steps(
    conn: Connection,
    migration: Migration,
    plan: list[Migration],
    mapping: dict[str, str],
    report: Report,
) -> None:
    """In the run's transaction, just before ``migration``'s steps: apply the
    mappings (before 002, or before 008 when 002 is not in the plan), and before
    002 carry the open leads' custom statuses to 008 (see the module docstring)."""
    versions = {m.version for m in plan}
    at_fixed = migration.version == FIXED_BY
    at_data = migration.version == DATA_FROM and FIXED_BY not in versions
    if not (at_fixed or at_data):
        return
    started = time.monotonic()
    with _quiet_user_triggers(conn):
        done = []
        for old, new in mapping.items():
            count = conn.execute(MAP, (new, old)).rowcount
            done.append(f"{old} -> {new} ({count:,} leads)")
        carried = 0
        if at_fixed:
            conn.execute(CARRY, (list(DEFAULTS),))
            carried = conn.execute(STAND_IN).rowcount
    if done:
        report.steps.append(
            StepTiming(
                migration.label,
                f"--map-status: {', '.join(done)}",
                time.monotonic() - started,
            )
        )
    if carried:
        report.steps.append(
            StepTiming(
                migration.label,
                f"custom statuses of {carried:,} open leads carried to 008",
                time.monotonic() - started,
            )
        )


class _quiet_user_triggers:
    """Disable the enabled user triggers of leads, and give each its mode back."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.triggers: list[tuple[str, str]] = []

    def __enter__(self) -> None:
        self.triggers = [(str(r[0]), str(r[1])) for r in self.conn.execute(USER_TRIGGERS)]
        for name, _ in self.triggers:
            self.conn.execute(
                sql.SQL("ALTER TABLE leads DISABLE TRIGGER {}").format(sql.Identifier(name))
            )

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:
            return  # the transaction rolls back, modes included
        for name, mode in self.triggers:
            self.conn.execute(
                sql.SQL("ALTER TABLE leads ENABLE {} TRIGGER {}").format(
                    MODES.get(mode, sql.SQL("")), sql.Identifier(name)
                )
            )


def _plan(plan: list[Migration]) -> str:
    if not plan:
        return "nothing is pending"
    return f"{plan[0].label} to {plan[-1].label}" if len(plan) > 1 else plan[0].label


__all__ = ["before_steps", "parse", "prepare"]
