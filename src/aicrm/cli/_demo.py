"""``aicrm demo``: the seed's story end to end, on a database of its own.

1. the original schema (000) filled with legacy data, anomalies included;
2. ``pg_dump --data-only`` warns about the circular foreign keys;
3. the dry run of migration 001, then 4. the migration itself;
5. the seed's example queries; 6. the pg_dump warning is gone;
7. the CRM core (the newest schema), realistic generated data, conversions through
   the library; 8. the reports.

The demo database, ``aicrm_demo``, is dropped and recreated on each run; a database
of that name that the demo did not create is never dropped.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import LiteralString

from psycopg import sql
from rich.text import Text

from aicrm import config
from aicrm.cli import _output as output
from aicrm.cli._report import CONVERSIONS, FUNNEL, cell, table
from aicrm.crm import conversion, reports
from aicrm.crm.records import STATUSES
from aicrm.crm.store import Query
from aicrm.db import Connection, Target, connect, target, tools
from aicrm.db.errors import translated
from aicrm.errors import AicrmError, PrerequisiteFailed, UsageError
from aicrm.migrate import Options, Report, runner
from aicrm.migrate.backup import client_env
from aicrm.sample import RESOLVABLE, crm as sample_crm, generate_legacy

DEMO_DB = "aicrm_demo"
MARK = "created by aicrm demo"
SEED = 1
LEGACY_LEADS = 5_000
GENERATED_LEADS = 20_000
ACTOR = "aicrm demo"

CONVERTED = "SELECT count(*) FROM leads WHERE is_converted = true"
ACTIVE = "SELECT count(*) FROM leads WHERE is_converted = false"
BUSIEST_CLIENT = """
SELECT client_id FROM client_lead_history
GROUP BY client_id ORDER BY count(*) DESC, max(conversion_date) DESC, client_id LIMIT 1
"""
CUSTOM_STATUSES = """
SELECT s.name, count(l.id) FROM lead_statuses s LEFT JOIN leads l ON l.status = s.name
WHERE s.name <> ALL(%s) GROUP BY s.name, s.position ORDER BY s.position
"""
QUALIFIED_GENERATED = """
SELECT l.id FROM leads l JOIN sample_truth t ON t.lead_id = l.id
CROSS JOIN LATERAL (SELECT count(*) AS n FROM contacts c WHERE c.lead_id = l.id) k
WHERE l.status = 'qualified' ORDER BY k.n DESC, l.created_at DESC, l.id LIMIT 3
"""
CRM_CORE = "SELECT to_regclass('crm_history') IS NOT NULL"
LEAD_AND_CLIENT = """
SELECT coalesce(nullif(concat_ws(' ', l.first_name, l.last_name), ''), l.email), c.name
FROM leads l JOIN clients c ON c.id = l.converted_to_client_id WHERE l.id = %s
"""


def demo() -> None:
    """Run the seed's story on its own database, aicrm_demo, recreated on each run:
    legacy data, the pg_dump warning, migration 001 (dry run, then for real), the
    seed's example queries, then the CRM core, generated data, conversions, reports."""
    started = time.monotonic()
    backups = config.backup_dir()
    _heading("1  The original CRM: schema 000, legacy data")
    with _step("creating the demo database"):
        where = fresh_database(target())
    output.say(f"demo database: {where.describe()}")
    with _step("creating the original schema (migration 000)"):
        _migrate(where, Options(target_version=0, backup_dir=backups))
    with _step("generating the legacy data"), connect(where) as conn:
        legacy = generate_legacy(conn, leads=LEGACY_LEADS, seed=SEED)
    planted = sum(legacy[name] for name in RESOLVABLE)
    output.say(
        f"legacy data: {legacy['leads']:,} leads, {legacy['clients']:,} clients, "
        f"{legacy['contacts']:,} contacts; {planted} anomalies planted for 001 to resolve"
    )

    _heading("2  pg_dump --data-only, before")
    with _step("running pg_dump --data-only"):
        _show_dump_warnings(where)

    _heading("3  Migration 001, dry run (rolled back)")
    with _step("dry-running migration 001"):
        dry = _migrate(where, Options(target_version=1, dry_run=True, backup_dir=backups))
    _show_dry_run(dry)

    _heading("4  Migration 001")
    with _step("migrating to 001"):
        done = _migrate(where, Options(target_version=1, backup_dir=backups))
    output.say(
        f"{_summary(done)}; locks held {done.lock_held_seconds:.3f} s "
        f"(waited {done.lock_wait_seconds:.3f} s)"
    )
    if done.backup is not None:
        output.say(f"backup: {done.backup.path} ({done.backup.bytes:,} bytes)")

    _heading("5  The seed's example queries")
    with _step("running the seed's example queries"), connect(where) as conn:
        _example_queries(conn)

    _heading("6  pg_dump --data-only, after")
    with _step("running pg_dump --data-only"):
        _show_dump_warnings(where)

    _heading("7  The CRM core: newest schema, realistic data, conversions")
    with _step("migrating to the newest version"):
        _migrate_to_head(where, Options(backup_dir=backups))
    with _step("generating CRM data"), connect(where) as conn:
        made = sample_crm.generate(conn, leads=GENERATED_LEADS, seed=SEED)
        output.say(
            f"generated {made.leads:,} more leads over two years (aicrm.sample.crm, seed "
            f"{made.seed}): {made.converted:,} converted, {made.contacts:,} contacts, "
            f"{made.history_rows:,} status changes; ground truth in sample_truth"
        )
    with _step("converting leads through the library"), connect(where) as conn:
        _conversions(conn)

    _heading("8  Reports")
    with _step("running the reports"), connect(where) as conn:
        output.stdout.print(table(reports.conversion_summary(conn), CONVERSIONS,
                                  "aicrm report conversions"))  # fmt: skip
        output.stdout.print(table(reports.status_funnel(conn), FUNNEL, "aicrm report funnel"))
    output.say(f"\ndemo done in {time.monotonic() - started:.1f} s; the database stays: {DEMO_DB}")


def fresh_database(server: Target) -> Target:
    """Drop and recreate the demo database; never drops one the demo did not make."""
    with connect(server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (DEMO_DB,),
        ).fetchone()
        if row is not None:
            if row[0] != MARK:
                raise UsageError(
                    f"A database named {DEMO_DB} exists and was not made by the demo, so the "
                    "demo will not drop it. Rename it, or point aicrm at another server."
                )
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DEMO_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(DEMO_DB), sql.Literal(MARK)
            )
        )
    return server.for_database(DEMO_DB)


def _heading(text: str) -> None:
    output.stdout.print()
    output.stdout.rule(f"[bold]{text}[/]", align="left")


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Any failure inside becomes one line naming the step, with its exit code."""
    try:
        with translated():
            yield
    except AicrmError as exc:
        failed = type(exc)(f"The demo failed while {what}: {exc.message}", details=exc.details)
        raise failed from exc


def _migrate(where: Target, options: Options) -> Report:
    with output.progress() as step:
        options.progress = step
        return runner.migrate(options, where)


def _migrate_to_head(where: Target, options: Options) -> None:
    """Migrate to the newest version. The legacy statuses of open leads ('nurturing',
    'demo_scheduled') are carried as custom statuses (migration 008, statuses as data)
    and converted leads become 'converted': nothing to map by hand."""
    report = _migrate(where, options)
    output.say(_summary(report))
    if report.backup is not None:
        output.say(f"backup: {report.backup.path}")
    with connect(where) as conn:
        row = conn.execute(CRM_CORE).fetchone()
        custom = conn.execute(CUSTOM_STATUSES, (list(STATUSES),)).fetchall() if row else []
    if not (row and row[0]):
        raise UsageError(
            f"the newest migration here is {report.to_version:03d}, without the CRM core "
            "(002: history and statuses) that the rest of the demo needs"
        )
    if custom:
        kept = ", ".join(f"{name} ({count:,} leads)" for name, count in custom)
        output.say(f"the legacy statuses stay, as custom statuses (aicrm statuses list): {kept}")


def _summary(report: Report) -> str:
    steps = f" ({', '.join(report.migrations)})" if report.migrations else ""
    return (
        f"{report.outcome}: {report.from_version:03d} -> {report.to_version:03d}{steps} "
        f"in {report.seconds:.2f} s"
    )


def _show_dump_warnings(where: Target) -> None:
    pg_dump = tools.find("pg_dump")
    conninfo, env = client_env(where)
    try:
        proc = subprocess.run(
            [str(pg_dump.path), "--data-only", "--no-password", "--dbname", conninfo],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PrerequisiteFailed(f"{pg_dump.path} did not run: {exc}.") from None
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if proc.returncode != 0:
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise PrerequisiteFailed(f"pg_dump --data-only failed: {last}")
    output.say(f"$ pg_dump --data-only {DEMO_DB} > /dev/null")
    if not lines:
        output.say("no warnings: the dump restores cleanly, table by table")
    for line in lines:
        output.stdout.print(Text(f"  {line}", style="yellow"))


def _show_dry_run(report: Report) -> None:
    found = [f for f in report.findings if f.count]
    blocking = [f for f in found if f.severity == "blocking"]
    output.say(f"integrity checks: {len(blocking)} blocking; what 001 will resolve:")
    for finding in found:
        output.say(f"  {finding.count:>6,}  {finding.check} [{finding.severity}]")
    output.say(f"objects: {len(report.objects_added)} added, {len(report.objects_dropped)} dropped")
    for name in report.objects_dropped:
        output.say(f"  - {name}")
    output.say("rows changed:")
    for rows in report.rows_changed:
        changes = [
            f"{count:,} {what}"
            for count, what in (
                (rows.inserted, "inserted"),
                (rows.updated, "updated"),
                (rows.deleted, "deleted"),
            )
            if count
        ]
        output.say(f"  {rows.table}: {', '.join(changes) or 'none'}")
    output.say(f"outcome: {report.outcome} in {report.seconds:.2f} s; nothing was kept")


# The query the demo prints for the busiest client (printed for the reader, run by
# reports.client_history); the id goes in as a quoted literal.
SHOWN_HISTORY = sql.SQL("SELECT * FROM client_lead_history WHERE client_id = {};")


def _example_queries(conn: Connection) -> None:
    converted = _count(conn, CONVERTED)
    output.say(f"{CONVERTED};\n  -> {converted:,} converted leads")
    output.stdout.print(
        table(
            reports.conversion_summary(conn), CONVERSIONS, "SELECT * FROM lead_conversion_summary;"
        )
    )
    row = conn.execute(BUSIEST_CLIENT).fetchone()
    if row is not None:
        history = reports.client_history(conn, row[0])
        shown = SHOWN_HISTORY.format(sql.Literal(str(row[0]))).as_string(conn)
        output.say(shown)
        output.say(f"  -> client {history[0].client_name}: {len(history)} lead(s)")
        for entry in history:
            output.say(
                f"     lead {entry.lead_email or entry.lead_id} from {entry.lead_source or '?'}, "
                f"created {cell('', entry.lead_created_at)}, converted "
                f"{cell('', entry.conversion_date)} ({cell('', entry.days_to_convert)} days)"
            )
    active = _count(conn, ACTIVE)
    output.say(f"{ACTIVE};\n  -> {active:,} active leads")
    output.say(f"converted + active = {converted + active:,} leads")
    conn.rollback()


def _count(conn: Connection, query: LiteralString) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def _conversions(conn: Connection) -> None:
    chosen = [row[0] for row in conn.execute(QUALIFIED_GENERATED).fetchall()]
    conn.rollback()
    for lead_id in chosen:
        done = conversion.convert_lead(conn, lead_id, actor=ACTOR)
        names = conn.execute(LEAD_AND_CLIENT, (done.lead_id,)).fetchone()
        conn.rollback()
        person, client = names if names else (str(done.lead_id), str(done.client_id))
        output.say(
            f"convert_lead: {person} -> new client {client} "
            f"({done.contacts_moved} contact(s) moved)"
        )
    query = Query(
        where={"status": "qualified", "source": "referral", "is_converted": False},
        attributes={"demo_requested": True},
    )
    bulk = conversion.convert_leads(conn, query=query, all_or_nothing=False, actor=ACTOR)
    output.say(
        "convert_leads(status=qualified, source=referral, demo_requested=true): "
        f"{len(bulk.converted):,} converted, {len(bulk.duplicates):,} skipped as duplicates"
    )
