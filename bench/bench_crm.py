"""The CRM core at scale: CSV import, single conversions, bulk conversion.

    python bench/bench_crm.py                                  # all three, default sizes
    python bench/bench_crm.py --only import --rows 1000000 --rounds 3
    python bench/bench_crm.py --only convert --workers 8 --duration 20 --rounds 3
    python bench/bench_crm.py --only bulk --bulk 100000 --rounds 3

Three measurements, each against a reference run on the same server in the same
run, the two sides alternating A B A B …:

import   ``aicrm.crm.importer.import_leads`` of a generated CSV of ``--rows`` leads
         into a fresh, empty CRM database (header check, COPY into staging, the
         checks in SQL, one INSERT … SELECT, the history triggers) against a raw
         ``COPY`` of the same file into a table of the same columns with no
         constraints, indexes or triggers. Target: import throughput ≥ 0.5× raw
         COPY. Then, on ``--profile-rows`` rows, where the time of the INSERT …
         SELECT goes: EXPLAIN ANALYZE, and the same statement without the history
         trigger, without the text-search index, and without any secondary index
         (each in a fresh copy, rolled back).
convert  ``aicrm.crm.conversion.convert_lead`` by ``--workers`` processes, each with
         its own connection and its own leads, for ``--duration`` seconds, against
         pgbench's built-in TPC-B-like script (``pgbench -c WORKERS -j 2 -T
         DURATION``, the pgbench of the embedded server), and against the same
         workers converting the way aicrm did before migration 006 (nine statements
         from Python). Target ≥ 0.5× pgbench's transactions/s.
bulk     ``aicrm.crm.conversion.convert_leads`` of ``--bulk`` open leads (chosen by a
         filter) in one call, on a fresh copy each round; then the time of each of
         its statements, and of the triggers each one fires. Target ≥ 20,000
         leads/s.

The server is the one aicrm would use: DATABASE_URL (or DB_*, PG*), else the
embedded PostgreSQL under AICRM_HOME (bench/out/home when unset). The bench
creates its own databases (``bench_crm_*``) and drops them at the end. With
AICRM_WIP_MIGRATIONS set, the databases are migrated with those files instead of
the packaged ones. Times are wall times seen by the client; "server CPU" is the
backend process's user+system time from /proc, when the server runs on this
machine (it is less disturbed by other work on a busy machine). The results
replace this benchmark's own sections of bench/RESULTS.md, leaving the others.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import platform
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aicrm import config
from aicrm.crm import (
    _import_file as import_file,
    conversion,
    duplicates,
    ids,
    importer,
    session,
    store,
)
from aicrm.crm.records import Lead
from aicrm.crm.store import Query
from aicrm.db import embedded, target
from aicrm.migrate import Options, migrate

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
DATA = OUT / "crm"
RESULTS = BENCH / "RESULTS.md"
PREFIX = "bench_crm_"
CHUNK = import_file.CHUNK

IMPORT_TITLE = "CRM import of {size} leads vs raw COPY"
CONVERT_TITLE = "CRM single conversions, {workers} workers vs pgbench"
BULK_TITLE = "CRM bulk conversion of {size} leads"

CSV_COLUMNS = (
    "first_name", "last_name", "email", "company_name", "source", "status", "ai_score",
    "attributes",
)  # fmt: skip
RAW_TABLE = """
CREATE TABLE raw_leads (
    first_name text, last_name text, email text, company_name text, source text,
    status text, ai_score real, attributes jsonb
)
"""
SERVER = """
SELECT current_setting('server_version'), current_setting('server_version_num')::int,
       current_setting('shared_buffers'), current_setting('max_wal_size'),
       current_setting('work_mem'), current_setting('synchronous_commit'),
       current_setting('wal_level')
"""
# Leads (and a contact for every fourth) for the conversion benchmarks, made in SQL.
SEED_LEADS = """
INSERT INTO leads (first_name, last_name, email, company_name, source, status, ai_score,
                   attributes)
SELECT 'First' || g, 'Last' || g, 'lead' || g || '@company' || (g %% 5000) || '.example',
       'Company ' || g, 'bench', (ARRAY['new', 'contacted', 'qualified'])[1 + g %% 3],
       (g %% 100) / 100.0, jsonb_build_object('industry', 'tech', 'seats', g %% 50)
FROM generate_series(1, %s) AS g
"""
SEED_CONTACTS = """
INSERT INTO contacts (lead_id, first_name, email)
SELECT id, 'Aide', 'aide.' || email FROM leads WHERE (hashtext(email) & 3) = 0
"""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the server and its databases ---------------------------------------------------


@dataclass
class Server:
    admin: str  # a superuser conninfo to the maintenance database
    source: str
    major: int = 0
    local: bool = True

    def conninfo(self, dbname: str) -> str:
        return make_conninfo(self.admin, dbname=dbname)


def find_server() -> Server:
    if not os.environ.get("AICRM_HOME"):
        os.environ["AICRM_HOME"] = str(OUT / "home")
    settings = config.resolve()
    if settings.embedded:
        server = Server(embedded.conninfo(settings.home, "postgres"), "embedded")
    else:
        where = target(settings)
        server = Server(make_conninfo(where.conninfo, dbname="postgres"), settings.source)
    with psycopg.connect(server.admin, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        assert row is not None
        server.major = int(row[0]) // 10000
        server.local = backend_cpu(conn) is not None
    return server


def backend_cpu(conn: psycopg.Connection[Any]) -> float | None:
    """The connection's backend's CPU seconds (user + system), when it runs here."""
    try:
        with open(f"/proc/{conn.info.backend_pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def create_database(server: Server, name: str, template: str | None = None) -> str:
    with psycopg.connect(server.admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if template is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        else:
            strategy = sql.SQL(" STRATEGY FILE_COPY") if server.major >= 15 else sql.SQL("")
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
                    sql.Identifier(name), sql.Identifier(template), strategy
                )
            )
    return server.conninfo(name)


def drop_database(server: Server, name: str) -> None:
    with psycopg.connect(server.admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def drop_leftovers(server: Server) -> None:
    """Databases an interrupted earlier run of this bench left behind."""
    with psycopg.connect(server.admin, autocommit=True) as conn:
        names = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (PREFIX,)
        ).fetchall()
    for (name,) in names:
        say(f"dropping {name}, left by an interrupted run")
        drop_database(server, name)


def checkpoint(server: Server) -> None:
    with psycopg.connect(server.admin, autocommit=True) as conn, suppress(psycopg.Error):
        conn.execute("CHECKPOINT")


def crm_template(server: Server, name: str) -> str:
    """A database migrated to the newest schema (with AICRM_WIP_MIGRATIONS if set)."""
    conninfo = create_database(server, name)
    wip = os.environ.get("AICRM_WIP_MIGRATIONS")
    where = target(
        config.resolve({"DATABASE_URL": conninfo, "AICRM_HOME": os.environ["AICRM_HOME"]})
    )
    migrate(
        Options(
            backup_dir=OUT / "backups" / "bench_crm", migrations_dir=Path(wip) if wip else None
        ),
        where,
    )
    for backup in (OUT / "backups" / "bench_crm").glob("*.sql"):
        backup.unlink()
    return conninfo


@contextmanager
def copy_of(server: Server, template: str, label: str) -> Iterator[str]:
    """A fresh copy of ``template`` (then a CHECKPOINT), dropped afterwards."""
    name = f"{PREFIX}{label}_{uuid.uuid4().hex[:8]}"
    conninfo = create_database(server, name, template)
    checkpoint(server)
    try:
        yield conninfo
    finally:
        drop_database(server, name)


@dataclass
class Timed:
    wall: float
    cpu: float | None

    def cpu_text(self) -> str:
        return "n/a" if self.cpu is None else f"{self.cpu:.2f} s"


@contextmanager
def timed(conn: psycopg.Connection[Any]) -> Iterator[list[Timed]]:
    out: list[Timed] = []
    cpu = backend_cpu(conn)
    started = time.perf_counter()
    yield out
    wall = time.perf_counter() - started
    after = backend_cpu(conn)
    out.append(Timed(wall, None if cpu is None or after is None else after - cpu))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], unit: str = " s", digits: int = 2) -> str:
    """Median (min–max)."""
    if not values:
        return "n/a"
    low, high = min(values), max(values)
    return f"{median(values):,.{digits}f}{unit} ({low:,.{digits}f}–{high:,.{digits}f})"


# --- the CSV ------------------------------------------------------------------------


def leads_csv(rows: int, seed: int = 7) -> Path:
    """A CSV of ``rows`` distinct leads (made once, then reused)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"leads_{rows}_{seed}.csv"
    if path.exists():
        return path
    say(f"writing {path} ({rows:,} rows)")
    rnd = random.Random(seed)
    first = ["Ann", "Bob", "Chen", "Dara", "Eve", "Femi", "Gus", "Hana", "Ivo", "Jun", "Zoë"]
    sources = ["web", "referral", "event", "ads", "partner"]
    statuses = ["new", "contacted", "qualified", "unqualified", "lost"]
    pending = path.with_suffix(".tmp")
    with pending.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(CSV_COLUMNS)
        for i in range(rows):
            company = i % 50_000
            out.writerow(
                [
                    rnd.choice(first),
                    f"Smith-{i % 9973}",
                    f"person{i}@company{company}.example",
                    f"Company {company}, Ltd",
                    rnd.choice(sources),
                    rnd.choice(statuses),
                    f"{rnd.random():.3f}",
                    f'{{"seats": {i % 100}, "plan": "{rnd.choice(["free", "pro"])}"}}',
                ]
            )
    pending.rename(path)
    return path


# --- import -------------------------------------------------------------------------


@dataclass
class ImportRun:
    number: int
    side: str  # 'import' or 'copy'
    wall: float
    cpu: float | None
    stages: dict[str, float] = field(default_factory=dict)
    load: float = 0.0


def import_side(server: Server, template: str, path: Path, number: int) -> ImportRun:
    load = os.getloadavg()[0]
    with copy_of(server, template, "imp") as conninfo, psycopg.connect(conninfo) as conn:
        marks: list[tuple[str, float]] = []
        started = time.perf_counter()

        def stage(text: str) -> None:
            marks.append((text.split()[0], time.perf_counter() - started))

        with timed(conn) as result:
            done = importer.import_leads(conn, path, actor="bench", stage=stage)
        assert done.imported == done.rows, done
        steps = ["upload", *(name for name, _ in marks)]
        starts = [0.0, *(at for _, at in marks)]
        ends = [*(at for _, at in marks), result[0].wall]
        stages = {n: e - s for n, s, e in zip(steps, starts, ends, strict=True)}
    return ImportRun(number, "import", result[0].wall, result[0].cpu, stages, load)


def copy_side(
    server: Server, template: str, path: Path, number: int, into_leads: bool = False
) -> ImportRun:
    """A raw COPY of the file: into a bare table (B), or straight into the CRM's
    ``leads`` with its indexes and triggers (C: no checks, no staging)."""
    load = os.getloadavg()[0]
    table = "leads" if into_leads else "raw_leads"
    with copy_of(server, template, "raw") as conninfo, psycopg.connect(conninfo) as conn:
        if not into_leads:
            conn.execute(RAW_TABLE)
        conn.execute("SELECT set_config('aicrm.actor', 'bench', false)")
        conn.commit()
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(
            sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in CSV_COLUMNS)
        )
        with timed(conn) as result:
            with path.open("rb") as handle, conn.cursor() as cur, cur.copy(statement) as copy:
                while chunk := handle.read(CHUNK):
                    copy.write(chunk)
            conn.commit()
    side = "copy into leads" if into_leads else "raw copy"
    return ImportRun(number, side, result[0].wall, result[0].cpu, {}, load)


@dataclass
class Variant:
    label: str
    wall: float
    cpu: float | None
    explain: list[str] = field(default_factory=list)


DROP_SECONDARY = "drop every index of leads but its primary key"


def profile_insert(server: Server, template: str, path: Path) -> list[Variant]:
    """The importer's INSERT … SELECT with parts of the schema taken away, each on a
    fresh copy, rolled back."""
    no_history: LiteralString = "ALTER TABLE leads DISABLE TRIGGER aicrm_history_insert"
    variants: list[tuple[str, list[LiteralString]]] = [
        ("migration 002 as is", []),
        ("without the history insert trigger", [no_history]),
        ("without leads_search_idx (GIN, full text)", ["DROP INDEX leads_search_idx"]),
        ("without the history trigger and every secondary index", [no_history, DROP_SECONDARY]),
    ]
    found: list[Variant] = []
    for label, changes in variants:
        with copy_of(server, template, "prof") as conninfo, psycopg.connect(conninfo) as conn:
            header = importer.read_header(path, importer.LEADS)
            checks = importer.Checks(importer.LEADS, header.columns, server.major >= 16)
            with conn.transaction(force_rollback=True):
                conn.execute("SELECT set_config('aicrm.actor', 'bench', true)")
                conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(importer.WORK_MEM))
                for change in changes:
                    if change == DROP_SECONDARY:
                        names = conn.execute(
                            "SELECT indexrelid::regclass::text FROM pg_index "
                            "WHERE indrelid = 'leads'::regclass AND NOT indisprimary"
                        ).fetchall()
                        for (name,) in names:
                            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
                    else:
                        conn.execute(change)
                checks.create_staging(conn)
                rows = import_file.upload(conn, path, header, None)  # the importer's own steps
                assert checks.run(conn, False, rows) == 0
                statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) ") + (
                    checks.insert_statement(False)
                )
                with timed(conn) as result:
                    plan = [r[0] for r in conn.execute(statement).fetchall()]
        say(f"  profile: {label}: {result[0].wall:.2f} s")
        found.append(Variant(label, result[0].wall, result[0].cpu, plan))
    return found


def raw_copy_seconds(server: Server, template: str, path: Path) -> Timed:
    run = copy_side(server, template, path, 0)
    return Timed(run.wall, run.cpu)


def bench_import(server: Server, args: argparse.Namespace) -> str:
    path = leads_csv(args.rows)
    template = f"{PREFIX}tpl_empty"
    crm_template(server, template)
    runs: list[ImportRun] = []
    try:
        for number in range(1, args.rounds + 1):
            for run in (
                import_side(server, template, path, number),
                copy_side(server, template, path, number),
                copy_side(server, template, path, number, into_leads=True),
            ):
                say(f"import round {number} {run.side}: {run.wall:.2f} s")
                runs.append(run)
        profile: list[Variant] = []
        profile_copy: Timed | None = None
        if args.profile_rows:
            small = leads_csv(args.profile_rows)
            say(f"profiling the INSERT … SELECT on {args.profile_rows:,} rows")
            profile_copy = raw_copy_seconds(server, template, small)
            profile = profile_insert(server, template, small)
    finally:
        drop_database(server, template)
    return import_section(args, runs, path, profile, profile_copy)


def import_section(
    args: argparse.Namespace,
    runs: list[ImportRun],
    path: Path,
    profile: list[Variant],
    profile_copy: Timed | None,
) -> str:
    imports = [r for r in runs if r.side == "import"]
    copies = [r for r in runs if r.side == "raw copy"]
    direct = [r for r in runs if r.side == "copy into leads"]
    walls = {"import": imports, "raw copy": copies, "copy into leads": direct}
    rate = {side: median([args.rows / r.wall for r in found]) for side, found in walls.items()}
    ratio = rate["import"] / rate["raw copy"]
    vs_direct = rate["import"] / rate["copy into leads"]
    pairs = [c.wall / i.wall for i, c in zip(imports, copies, strict=True)]
    cpu_ratio = None
    if all(r.cpu for r in runs):
        cpu_ratio = median([c.cpu or 0 for c in copies]) / median([i.cpu or 0 for i in imports])
    size = path.stat().st_size / 1e6
    lines = [
        f"Data: `{path.relative_to(BENCH.parent)}`, {args.rows:,} rows of "
        f"{', '.join(CSV_COLUMNS)} ({size:,.0f} MB; distinct emails, JSON attributes). "
        "A = `importer.import_leads` into a fresh copy of an empty CRM database (migrated to "
        "head); B = `COPY raw_leads FROM STDIN (FORMAT csv, HEADER)` of the same file, in "
        "1 MiB chunks, into a table of the same columns with no constraints, indexes or "
        "triggers; C (for reference) = the same COPY straight into the CRM's `leads` table "
        "as migrated (its indexes, constraints and history trigger; no staging, no checks). "
        "Each run in a fresh copy after a `CHECKPOINT`; A B C A B C ….",
        "",
        "| | A: import | B: raw COPY | C: COPY into `leads` |",
        "|---|---:|---:|---:|",
        "| wall time, median (min–max) | "
        + " | ".join(spread([r.wall for r in found]) for found in walls.values())
        + " |",
        "| rows/s, median | " + " | ".join(f"{v:,.0f}" for v in rate.values()) + " |",
        "| server CPU, median | " + " | ".join(_cpu(found) for found in walls.values()) + " |",
        "",
        f"**Import throughput = {ratio:.3f}× raw COPY** (per pair: "
        f"{', '.join(f'{p:.3f}' for p in pairs)}"
        + (f"; by server CPU: {cpu_ratio:.3f}×" if cpu_ratio else "")
        + f"). Target ≥ 0.5×: **{'met' if ratio >= 0.5 else 'missed'}**. Against C, a COPY "
        f"straight into `leads`, the import runs at {vs_direct:.2f}× (what the staging, the "
        "checks and INSERT … SELECT instead of COPY cost on top of the schema's own work).",
        "",
        "Where an import's time goes (median of the runs):",
        "",
        "| step | seconds |",
        "|---|---:|",
    ]
    for step in imports[0].stages:
        lines.append(f"| {step} | {median([r.stages.get(step, 0.0) for r in imports]):.2f} |")
    lines += ["", "Every run:", "", "| round | side | wall | server CPU | load (1 min) |",
              "|---:|---|---:|---:|---:|"]  # fmt: skip
    for run in runs:
        cpu = "n/a" if run.cpu is None else f"{run.cpu:.2f} s"
        lines.append(f"| {run.number} | {run.side} | {run.wall:.2f} s | {cpu} | {run.load:.2f} |")
    if profile and profile_copy is not None:
        lines += [
            "",
            f"### Profile of the INSERT … SELECT ({args.profile_rows:,} rows)",
            "",
            f"The importer's own statements on `leads_{args.profile_rows}_7.csv`: staging "
            "COPY and checks, then the timed `EXPLAIN (ANALYZE, BUFFERS, WAL)` of its INSERT "
            "… SELECT, each variant in a fresh copy and rolled back. For scale, a raw COPY of "
            f"that file took {profile_copy.wall:.2f} s (server CPU {profile_copy.cpu_text()}).",
            "",
            "| variant | INSERT … SELECT wall | server CPU |",
            "|---|---:|---:|",
        ]
        for variant in profile:
            cpu = "n/a" if variant.cpu is None else f"{variant.cpu:.2f} s"
            lines.append(f"| {variant.label} | {variant.wall:.2f} s | {cpu} |")
        lines += ["", "EXPLAIN (ANALYZE, BUFFERS, WAL) as is:", "", "```text"]
        lines += [line for line in profile[0].explain if line.strip()]
        lines += ["```"]
    return "\n".join(lines)


def _cpu(runs: list[ImportRun]) -> str:
    values = [r.cpu for r in runs if r.cpu is not None]
    return spread(values) if len(values) == len(runs) else "n/a"


# --- single conversions -------------------------------------------------------------


# The conversion as aicrm did it before migration 006 (nine statements from Python,
# each a round trip), kept here as the reference A' runs against: the new-client path
# of the old ``convert_lead``, statement for statement.
BEFORE_006_NEW_CLIENT = sql.SQL("""
INSERT INTO clients (id, name, industry, ai_score, ai_summary, ai_annotations, attributes)
SELECT %s, {name}, l.attributes ->> 'industry', l.ai_score, l.ai_summary, l.ai_annotations,
       l.attributes
FROM leads l WHERE l.id = %s
""").format(name=conversion.CLIENT_NAME)
BEFORE_006_MARK = """
UPDATE leads SET converted_to_client_id = %s, conversion_date = now(), is_converted = true,
                 status = 'converted', updated_at = now()
WHERE id = %s RETURNING conversion_date
"""
BEFORE_006_CONTACTS = (
    "UPDATE contacts SET client_id = %s, lead_id = NULL, updated_at = now() WHERE lead_id = %s"
)


def convert_before_006(conn: psycopg.Connection[Any], lead_id: str, actor: str) -> None:
    """``convert_lead`` of aicrm before migration 006, for an open lead into a new client."""
    key = ids.parse(lead_id, "lead id")
    with session.transaction(conn, actor):
        lead = store.get(conn, Lead, key, lock=True)
        assert not lead.is_converted
        duplicates.refuse(conn, lead.email, [lead.id])
        target = uuid.uuid4()
        conn.execute(BEFORE_006_NEW_CLIENT, (target, lead.id))
        conn.execute(BEFORE_006_MARK, (target, lead.id)).fetchone()
        conn.execute(BEFORE_006_CONTACTS, (target, lead.id))


def convert_worker(
    conninfo: str,
    lead_ids: list[str],
    barrier: Any,
    deadline_after: float,
    results: Any,
    before_006: bool = False,
) -> None:
    """Convert leads one by one until the time is up; report (count, start, end, error,
    this thread's CPU seconds)."""
    count = 0
    error = None
    with psycopg.connect(conninfo) as conn:
        barrier.wait()
        started = time.perf_counter()
        client_cpu = time.thread_time()
        deadline = started + deadline_after
        try:
            for lead in lead_ids:
                if time.perf_counter() >= deadline:
                    break
                if before_006:
                    convert_before_006(conn, lead, "bench")
                else:
                    conversion.convert_lead(conn, lead, actor="bench")
                count += 1
        except Exception as exc:  # reported, not raised: the parent prints it
            error = f"{type(exc).__name__}: {exc}"
        ended = time.perf_counter()
        client_cpu = time.thread_time() - client_cpu
    results.put((count, started, ended, error, client_cpu))


def convert_process(
    conninfo: str,
    shares: list[list[str]],
    barrier: Any,
    deadline_after: float,
    results: Any,
    before_006: bool = False,
) -> None:
    """One client process running a worker thread per share, like a pgbench thread
    (``-j``) serving several clients (``-c``); psycopg releases the GIL while it waits."""
    threads = [
        threading.Thread(
            target=convert_worker,
            args=(conninfo, share, barrier, deadline_after, results, before_006),
        )
        for share in shares
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@dataclass
class ConvertRun:
    number: int
    side: str
    tps: float
    count: int
    seconds: float
    load: float
    note: str = ""
    client_cpu: float | None = None  # client CPU seconds per transaction
    server_cpu: float | None = None  # the server's CPU seconds per transaction


def server_cpu_total(server: Server) -> float | None:
    """The PostgreSQL server's CPU seconds so far, all its processes (from /proc; None
    when it does not run here): the postmaster's own and its reaped children's
    (cutime, cstime: backends that have exited), and every live child's."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int | str) -> list[str]:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()

    try:
        with psycopg.connect(server.admin, autocommit=True) as conn:
            postmaster = int(stat(conn.info.backend_pid)[1])
        fields = stat(postmaster)
    except (OSError, IndexError, ValueError):
        return None
    total = sum(int(f) for f in fields[11:15])
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                child = stat(entry)
            except (OSError, IndexError):
                continue
            if child[1] == str(postmaster):
                total += int(child[11]) + int(child[12])
    return total / tick


def aicrm_conversions(
    server: Server,
    template: str,
    leads: list[str],
    args: argparse.Namespace,
    number: int,
    before_006: bool = False,
) -> ConvertRun:
    workers, duration = args.workers, args.duration
    load = os.getloadavg()[0]
    context = multiprocessing.get_context("spawn")
    with copy_of(server, template, "conv") as conninfo:
        barrier = context.Barrier(workers + 1)
        results = context.Queue()
        share = len(leads) // workers
        shares = [leads[i * share : (i + 1) * share] for i in range(workers)]
        processes = [
            context.Process(
                target=convert_process,
                args=(
                    conninfo,
                    shares[p :: args.processes],
                    barrier,
                    duration,
                    results,
                    before_006,
                ),
            )
            for p in range(min(args.processes, workers))
        ]
        for process in processes:
            process.start()
        barrier.wait()
        cpu_before = server_cpu_total(server)
        outcomes = [results.get(timeout=duration + 600) for _ in shares]
        for process in processes:
            process.join()
        cpu_after = server_cpu_total(server)
    errors = [o[3] for o in outcomes if o[3]]
    if errors:
        raise SystemExit(f"error: a conversion worker failed: {errors[0]}")
    count = sum(o[0] for o in outcomes)
    seconds = max(o[2] for o in outcomes) - min(o[1] for o in outcomes)
    note = ""
    if any(o[0] == share for o in outcomes):
        note = "a worker ran out of leads before the time was up"
    side = "aicrm before 006" if before_006 else "aicrm"
    client = sum(o[4] for o in outcomes) / max(count, 1)
    served = (
        None
        if cpu_before is None or cpu_after is None
        else (cpu_after - cpu_before) / max(count, 1)
    )
    return ConvertRun(number, side, count / seconds, count, seconds, load, note, client, served)


TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")
TRANSACTIONS = re.compile(r"number of transactions actually processed: (\d+)")


def pgbench_env(server: Server, dbname: str) -> dict[str, str]:
    params = conninfo_to_dict(server.conninfo(dbname))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE",
             "password": "PGPASSWORD", "sslmode": "PGSSLMODE"}  # fmt: skip
    for key, name in names.items():
        if params.get(key):
            env[name] = str(params[key])
    return env


def pgbench(server: Server, args: list[str], env: dict[str, str]) -> str:
    program = embedded.bin_dir() / "pgbench"
    done = subprocess.run(
        [str(program), *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"error: pgbench {shlex.join(args)} failed: {done.stderr.strip()[-800:]}")
    return done.stdout + done.stderr


def pgbench_run(
    server: Server, env: dict[str, str], workers: int, duration: float, number: int
) -> ConvertRun:
    load = os.getloadavg()[0]
    checkpoint(server)
    text = pgbench(server, ["-c", str(workers), "-j", "2", "-T", str(int(duration))], env)
    tps = TPS.search(text)
    count = TRANSACTIONS.search(text)
    if tps is None or count is None:
        raise SystemExit(f"error: cannot read pgbench's output: {text[-800:]}")
    return ConvertRun(number, "pgbench", float(tps.group(1)), int(count.group(1)), duration, load)


def seeded_template(server: Server, name: str, leads: int) -> list[str]:
    """A CRM database with ``leads`` open leads (a contact for about every fourth);
    their ids, in a random order."""
    conninfo = crm_template(server, name)
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT set_config('aicrm.actor', 'bench', false)")
        conn.execute(SEED_LEADS, (leads,))
        conn.execute(SEED_CONTACTS)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM leads").fetchall()]
    random.Random(3).shuffle(ids)
    return ids


def bench_convert(server: Server, args: argparse.Namespace) -> str:
    template = f"{PREFIX}tpl_conv"
    bench_db = f"{PREFIX}pgbench"
    say(f"seeding {args.convert_leads:,} leads for the single conversions")
    ids = seeded_template(server, template, args.convert_leads)
    create_database(server, bench_db)
    env = pgbench_env(server, bench_db)
    runs: list[ConvertRun] = []
    try:
        pgbench(server, ["-i", "-q", "-s", str(args.pgbench_scale)], env)
        if args.warmup > 0:
            # Not measured: the server's first heavy run of WAL creates new WAL segment
            # files (a steady server recycles them), which made the first round slower.
            warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
            run = aicrm_conversions(server, template, ids, warm, 0)
            say(f"convert warm-up ({args.warmup:.0f} s, not counted): {run.tps:.0f}/s")
        for number in range(1, args.rounds + 1):
            for run in (
                aicrm_conversions(server, template, ids, args, number),
                pgbench_run(server, env, args.workers, args.duration, number),
                aicrm_conversions(server, template, ids, args, number, before_006=True),
            ):
                say(f"convert round {number} {run.side}: {run.tps:.0f}/s ({run.count:,})")
                runs.append(run)
    finally:
        drop_database(server, template)
        drop_database(server, bench_db)
    return convert_section(args, runs)


def convert_section(args: argparse.Namespace, runs: list[ConvertRun]) -> str:
    ours = [r.tps for r in runs if r.side == "aicrm"]
    theirs = [r.tps for r in runs if r.side == "pgbench"]
    before = [r.tps for r in runs if r.side == "aicrm before 006"]
    ratio = median(ours) / median(theirs)
    lines = [
        f"A = {args.workers} workers (threads spread over {args.processes} client processes, as "
        f"pgbench spreads its {args.workers} clients over 2 threads), each with its own "
        "connection, calling "
        "`conversion.convert_lead` on its own open leads (of "
        f"{args.convert_leads:,} seeded in SQL, a contact for about every fourth) for "
        f"{args.duration:.0f} s, on a fresh copy each round; B = `pgbench -c {args.workers} "
        f"-j 2 -T {args.duration:.0f}` (built-in TPC-B-like script, scale "
        f"{args.pgbench_scale}, `pgbench -i`-ed once) on the same server; A' = the same "
        "workers converting the way aicrm did before migration 006 (nine statements from "
        "Python in a transaction, kept in the bench as `convert_before_006`). "
        f"An unmeasured {args.warmup:.0f} s run of A first, then A B A' A B A' ….",
        "",
        "| | A: convert_lead | B: pgbench TPC-B | A': convert_lead before 006 |",
        "|---|---:|---:|---:|",
        f"| transactions/s, median (min–max) | {spread(ours, '', 0)} | {spread(theirs, '', 0)} "
        f"| {spread(before, '', 0)} |",
        "",
        f"**Conversions/s = {ratio:.3f}× pgbench's tps** (medians; per round, A ÷ the B "
        f"after it: {', '.join(f'{a / b:.3f}' for a, b in zip(ours, theirs, strict=True))}). "
        f"Target ≥ 0.5×: **{'met' if ratio >= 0.5 else 'missed'}**. Before migration 006, "
        f"in the same run: {median(before) / median(theirs):.3f}×.",
        "",
        "Client CPU is each worker thread's own CPU time per conversion (pgbench's client "
        "is C and needs next to none); on a machine with few cores it competes with the "
        "server for the same CPUs.",
        "",
        "| round | side | transactions/s | transactions | seconds | client CPU per transaction "
        "| load (1 min) | note |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        client = "n/a" if run.client_cpu is None else f"{run.client_cpu * 1000:.2f} ms"
        lines.append(
            f"| {run.number} | {run.side} | {run.tps:,.0f} | {run.count:,} | {run.seconds:.1f} "
            f"| {client} | {run.load:.2f} | {run.note} |"
        )
    return "\n".join(lines)


# --- bulk conversion ----------------------------------------------------------------


@dataclass
class BulkRun:
    number: int
    leads: int
    wall: float
    cpu: float | None
    load: float


def bulk_run(server: Server, template: str, number: int) -> BulkRun:
    load = os.getloadavg()[0]
    chosen = Query(where={"source": "bench", "is_converted": False})
    with (
        copy_of(server, template, "bulk") as conninfo,
        psycopg.connect(conninfo) as conn,
        timed(conn) as result,
    ):
        done = conversion.convert_leads(conn, query=chosen, actor="bench")
    return BulkRun(number, len(done.converted), result[0].wall, result[0].cpu, load)


@dataclass
class Statement:
    label: str
    timed: Timed
    rows: int
    triggers: dict[str, tuple[float, int]]  # trigger -> (seconds, calls), from EXPLAIN

    def trigger_seconds(self) -> float:
        return sum(seconds for seconds, _ in self.triggers.values())


def bulk_statements(server: Server, template: str) -> list[Statement]:
    """Each statement of convert_leads on every lead at once (one chunk), under
    ``EXPLAIN (ANALYZE, FORMAT JSON)`` for the time of each trigger, in a transaction
    rolled back."""
    found: list[Statement] = []
    with (
        copy_of(server, template, "bprof") as conninfo,
        psycopg.connect(conninfo) as conn,
        conn.transaction(force_rollback=True),
    ):
        conn.execute("SELECT set_config('aicrm.actor', 'bench', true)")
        keys = sorted(r[0] for r in conn.execute("SELECT id FROM leads").fetchall())
        everything = (0, len(keys))
        conn.execute(conversion.BULK_SETUP)
        steps: list[tuple[str, sql.Composable, Any]] = [
            ("lock and list the leads", sql.SQL(conversion.BULK_FROM_IDS), (keys,)),
            ("check duplicate emails", sql.SQL(conversion.BULK_DUPLICATES), None),
            ("insert the clients", conversion.BULK_CLIENTS, everything),
            ("mark the leads converted", sql.SQL(conversion.BULK_LEADS), everything),
            ("move the contacts", sql.SQL(conversion.BULK_CONTACTS), everything),
        ]
        for label, statement, params in steps:
            query = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + statement
            with timed(conn) as result:
                row = conn.execute(query, params).fetchone()
            assert row is not None
            plan = row[0][0]
            triggers = {
                # a foreign key's check by its constraint's name, not RI_ConstraintTrigger_…
                (f"FK {t['Constraint Name']}" if "Constraint Name" in t else t["Trigger Name"]): (
                    t["Time"] / 1000,
                    t["Calls"],
                )
                for t in plan.get("Triggers", [])
            }
            rows = int(plan["Plan"].get("Actual Rows", 0) or 0)
            if plan["Plan"].get("Node Type") == "ModifyTable":
                rows = int(plan["Plan"]["Plans"][0].get("Actual Rows", 0))
            found.append(Statement(label, result[0], rows, triggers))
    return found


def bench_bulk(server: Server, args: argparse.Namespace) -> str:
    template = f"{PREFIX}tpl_bulk"
    say(f"seeding {args.bulk:,} leads for the bulk conversion")
    seeded_template(server, template, args.bulk)
    runs: list[BulkRun] = []
    try:
        for number in range(1, args.rounds + 1):
            run = bulk_run(server, template, number)
            say(f"bulk round {number}: {run.leads / run.wall:,.0f}/s")
            runs.append(run)
        statements = bulk_statements(server, template)
    finally:
        drop_database(server, template)
    return bulk_section(args, runs, statements)


def bulk_section(args: argparse.Namespace, runs: list[BulkRun], statements: list[Statement]) -> str:
    rates = [r.leads / r.wall for r in runs]
    lines = [
        f"`conversion.convert_leads(conn, query=Query(where={{'source': 'bench', "
        f"'is_converted': False}}))` on a fresh copy of a CRM database holding {args.bulk:,} "
        "open leads (seeded in SQL, a contact for about every fourth), each round after a "
        "`CHECKPOINT`; wall time of the call, commit included.",
        "",
        f"**{median(rates):,.0f} leads/s** (median; min {min(rates):,.0f}, max "
        f"{max(rates):,.0f}). Target ≥ 20,000 leads/s: "
        f"**{'met' if median(rates) >= 20_000 else 'missed'}**.",
        "",
        "| round | leads | wall | leads/s | server CPU | load (1 min) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        cpu = "n/a" if run.cpu is None else f"{run.cpu:.2f} s"
        lines.append(
            f"| {run.number} | {run.leads:,} | {run.wall:.2f} s "
            f"| {run.leads / run.wall:,.0f} | {cpu} | {run.load:.2f} |"
        )
    total = sum(s.timed.wall for s in statements)
    in_triggers = sum(s.trigger_seconds() for s in statements)
    lines += [
        "",
        f"Where the time goes: each statement of `convert_leads` on all {args.bulk:,} leads "
        "at once, under `EXPLAIN (ANALYZE, FORMAT JSON)` (which adds some timing overhead), "
        'in a transaction rolled back. "Triggers" is the time EXPLAIN reports for the '
        "triggers the statement fired (history, guard, foreign-key checks); the rest is the "
        "statement's own work (reading, writing the rows and every index entry, WAL).",
        "",
        "| statement | rows | wall | server CPU | of which triggers | triggers (seconds, calls) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for s in statements:
        fired = "; ".join(
            f"{name} {seconds:.2f} s ({calls:,})" for name, (seconds, calls) in s.triggers.items()
        )
        lines.append(
            f"| {s.label} | {s.rows:,} | {s.timed.wall:.2f} s | {s.timed.cpu_text()} "
            f"| {s.trigger_seconds():.2f} s | {fired or '—'} |"
        )
    lines += [
        "",
        f"All five: {total:.2f} s, {in_triggers:.2f} s of it in triggers "
        f"({args.bulk / total:,.0f} leads/s for the statements alone; "
        f"{args.bulk / max(total - in_triggers, 1e-9):,.0f} leads/s if the triggers cost nothing).",
    ]
    return "\n".join(lines)


# --- the results file ---------------------------------------------------------------


def machine(server: Server) -> str:
    with psycopg.connect(server.admin) as conn:
        row = conn.execute(SERVER).fetchone()
    assert row is not None
    mem_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return (
        f"Machine: {os.cpu_count()} CPUs (nproc), {mem_kb / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}; PostgreSQL {row[0]} ({server.source}; "
        f"shared_buffers {row[2]}, max_wal_size {row[3]}, work_mem {row[4]}, "
        f"synchronous_commit {row[5]}, wal_level {row[6]})."
    )


def header(title: str, server: Server, started: datetime, loads: tuple[float, float]) -> str:
    command = "python " + shlex.join(["bench/bench_crm.py", *sys.argv[1:]])
    wip = os.environ.get("AICRM_WIP_MIGRATIONS")
    return "\n".join(
        [
            f"## {title}",
            "",
            f"Command: `{command}` (from the repository root, with the project's venv"
            + (f"; AICRM_WIP_MIGRATIONS={wip}" if wip else "")
            + ").",
            "",
            machine(server)
            + f" Run {started:%Y-%m-%d %H:%M} UTC; load average (1 min) {loads[0]:.2f} "
            f"before, {loads[1]:.2f} after"
            + (
                " (a shared machine: other work ran at the same time, so wall times are "
                "noisy; the A/B alternation and the server CPU column help)."
                if max(loads) > (os.cpu_count() or 1)
                else "."
            ),
            "",
            "",
        ]
    )


def write_section(path: Path, title: str, body: str) -> None:
    """Replace the ``## title`` section of ``path`` with ``body`` (append it if absent),
    keeping every other section as it is."""
    text = (
        path.read_text()
        if path.exists()
        else (
            "# Benchmarks\n\nOne `##` section per benchmark, each with the command that produced "
            "it; re-running a benchmark replaces its own section only.\n"
        )
    )
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {title}"), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        kept_after = "\n".join(lines[end:])
        new = "\n".join(lines[:start]).rstrip("\n")
        new = (new + "\n\n" if new else "") + body.rstrip("\n") + "\n"
        if kept_after:
            new += "\n" + kept_after.rstrip("\n") + "\n"
    path.write_text(new)


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=("import", "convert", "bulk"),
                        help="run only these parts (repeatable; default: all)")  # fmt: skip
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the import CSV")
    parser.add_argument("--profile-rows", type=int, default=200_000,
                        help="rows for the INSERT … SELECT profile (0: none)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds per measurement")
    parser.add_argument("--workers", type=int, default=8, help="concurrent conversion workers")
    parser.add_argument("--processes", type=int, default=2,
                        help="client processes the workers are spread over, as threads "
                        "(like pgbench -j)")  # fmt: skip
    parser.add_argument("--duration", type=float, default=20, help="seconds per conversion run")
    parser.add_argument("--warmup", type=float, default=10,
                        help="seconds converted before the measured rounds (0: none)")  # fmt: skip
    parser.add_argument("--convert-leads", type=int, default=80_000,
                        help="leads seeded for the single conversions")  # fmt: skip
    parser.add_argument("--pgbench-scale", type=int, default=10, help="pgbench -i -s")
    parser.add_argument("--bulk", type=int, default=100_000, help="leads for the bulk conversion")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print the sections only")
    args = parser.parse_args(argv)
    parts = args.only or ["import", "convert", "bulk"]
    # A terminated bench still drops its databases (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = find_server()
    say(f"server: PostgreSQL {server.major} ({server.source})")
    drop_leftovers(server)
    benches: dict[str, tuple[str, Callable[[Server, argparse.Namespace], str]]] = {
        "import": (IMPORT_TITLE.format(size=size_label(args.rows)), bench_import),
        "convert": (CONVERT_TITLE.format(workers=args.workers), bench_convert),
        "bulk": (BULK_TITLE.format(size=size_label(args.bulk)), bench_bulk),
    }
    for part in ("import", "convert", "bulk"):
        if part not in parts:
            continue
        title, run = benches[part]
        started = datetime.now(UTC)
        before = os.getloadavg()[0]
        body = run(server, args)
        text = header(title, server, started, (before, os.getloadavg()[0])) + body + "\n"
        print(text)
        if not args.no_write:
            write_section(args.results, title, text)
            say(f"wrote the section '{title}' of {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
