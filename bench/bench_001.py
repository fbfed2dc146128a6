"""Migration 001 at scale: aicrm's 001 against a naive single-transaction script.

    python bench/bench_001.py --leads 1000000 --rounds 3

Creates a legacy database of ``--leads`` leads once, as a template (with
bench/generate_legacy.py: resolvable anomalies, no orphans), then for each run
clones it (CREATE DATABASE … TEMPLATE), checkpoints, and runs one side on the
clone, alternating A B A B …:

A. ``python -m aicrm db migrate --target 001 --json`` (integrity checks, pg_dump
   backup, 001 in one transaction, ANALYZE; not the later migrations);
B. ``psql -f bench/naive_001.sql`` (the same change written by hand).

Both are measured from outside the same way: the wall time of the process, and how
long an ACCESS EXCLUSIVE lock on ``leads`` is held, seen by a poller connection
that samples pg_locks every ``--interval`` seconds for a granted
AccessExclusiveLock on the clone's ``leads`` held by another backend (first seen
to last seen). The results (median, min and max per side, 001's steps, every run)
replace the section "Migration 001 at 1M leads" of bench/RESULTS.md ("at N leads"
for other sizes, or the title given by --section), leaving the other sections alone.

The server is the one aicrm would use: DATABASE_URL (or DB_*, PG*), else the
embedded PostgreSQL under AICRM_HOME (bench/out/home when unset).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aicrm import config
from aicrm.db import embedded, target, tools

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
NAIVE = BENCH / "naive_001.sql"
GENERATOR = BENCH / "generate_legacy.py"
GENERATOR_SOURCE = REPO / "src" / "aicrm" / "sample" / "_legacy.py"
RESULTS = BENCH / "RESULTS.md"
SECTION = "Migration 001 at {size} leads"
CLONE = "bench001_run"
STEERING = ("DATABASE_URL", *config.DB_VARIABLES, *config.PG_VARIABLES, "AICRM_DEBUG")

DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"
TEMPLATE_MARK = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
SERVER = """
SELECT current_setting('server_version'), current_setting('server_version_num')::int,
       current_setting('shared_buffers'), current_setting('max_wal_size'),
       current_setting('work_mem'), current_setting('maintenance_work_mem'),
       current_setting('synchronous_commit')
"""
DATABASE_SIZE = "SELECT pg_size_pretty(pg_database_size(current_database()))"
OIDS = """
SELECT (SELECT oid FROM pg_database WHERE datname = current_database()), 'leads'::regclass::oid
"""
LOCK_HELD = """
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'relation' AND database = %s AND relation = %s
      AND mode = 'AccessExclusiveLock' AND granted AND pid <> pg_backend_pid()
)
"""
CONVERTED = "SELECT count(*) FILTER (WHERE is_converted), count(*) FROM leads"
OTHER_BACKENDS = """
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()
"""


@dataclass
class LockWatch:
    """Samples pg_locks from its own connection, in a thread, until stopped."""

    conninfo: str
    database: int
    relation: int
    interval: float
    first: float | None = None
    last: float | None = None
    polls: int = 0
    hits: int = 0
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LockWatch:
        self._thread = threading.Thread(target=self._run, name="lock-watch", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self.error:
            raise RuntimeError(f"lock watcher failed: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error:
            raise RuntimeError(f"lock watcher failed: {self.error}")

    def _run(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                conn.execute("SET application_name = 'bench_001 lock watch'")
                self._ready.set()
                while not self._stop.is_set():
                    before = time.perf_counter()
                    row = conn.execute(
                        LOCK_HELD, (self.database, self.relation), prepare=True
                    ).fetchone()
                    now = (before + time.perf_counter()) / 2  # when pg_locks was read
                    self.polls += 1
                    if row and row[0]:
                        self.hits += 1
                        self.first = now if self.first is None else self.first
                        self.last = now
                    self._stop.wait(self.interval)
        except psycopg.Error as exc:
            self.error = str(exc).splitlines()[0]
        finally:
            self._ready.set()

    @property
    def held(self) -> float:
        """Seconds from the first to the last sample that saw the lock (0: never seen)."""
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first


class CpuMeter:
    """CPU time the rest of the machine used while a run went on: all CPU time
    (/proc/stat) minus this process and its children (the poller, aicrm, pg_dump,
    psql) and, when the server is private to the benchmark, the server's processes."""

    def __init__(self, server_pid: int | None) -> None:
        self.roots = [os.getpid()] + ([server_pid] if server_pid else [])
        self.private = server_pid is not None
        self.others = 0.0
        self._start = (0.0, 0.0)

    def __enter__(self) -> CpuMeter:
        self._start = (_busy_seconds(), sum(_tree_seconds(root) for root in self.roots))
        return self

    def __exit__(self, *exc: object) -> None:
        busy, ours = _busy_seconds(), sum(_tree_seconds(root) for root in self.roots)
        self.others = max(0.0, (busy - self._start[0]) - (ours - self._start[1]))


def _busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _tree_seconds(root: int) -> float:
    """CPU seconds of ``root`` and its live descendants, with their reaped children."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        rest = text[text.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(rest[1])
        cpu[int(entry.name)] = sum(int(x) for x in rest[11:15]) / os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [root]
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


@dataclass
class Run:
    number: int
    side: str
    wall: float
    lock_held: float
    lock_first_seen: float | None
    polls: int
    poll_interval: float
    load: float
    others: float | None  # CPU cores the rest of the machine used, on average
    converted: int
    report: dict[str, Any] | None = None


def bench_home() -> None:
    if not os.environ.get("AICRM_HOME"):
        os.environ["AICRM_HOME"] = str(OUT / "home")


def admin_conninfo() -> tuple[str, str]:
    """A conninfo to the configured server for admin work, and where it came from."""
    settings = config.resolve()
    if settings.embedded:
        return embedded.conninfo(settings.home, "postgres"), "embedded"
    return target(settings).conninfo, settings.source


def child_env(conninfo: str, **extra: str) -> dict[str, str]:
    """The environment of a child process pointed at ``conninfo``; the password (if
    any) travels in PGPASSWORD, never on a command line."""
    env = {k: v for k, v in os.environ.items() if k not in STEERING}
    params = conninfo_to_dict(conninfo)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    env["DATABASE_URL"] = make_conninfo("", **params)
    env.update(extra)
    return env


def generator_fingerprint(leads: int, seed: int) -> str:
    digest = hashlib.sha256(GENERATOR_SOURCE.read_bytes() + GENERATOR.read_bytes()).hexdigest()
    return json.dumps({"leads": leads, "seed": seed, "generator": digest[:16]}, sort_keys=True)


def ensure_template(admin: str, name: str, leads: int, seed: int, reuse: bool) -> dict[str, Any]:
    """Create the template database (or reuse one made by the same generator); return
    what generate_legacy.py reported, plus the database size."""
    mark = generator_fingerprint(leads, seed)
    with psycopg.connect(admin, autocommit=True) as conn:
        found = conn.execute(TEMPLATE_MARK, (name,)).fetchone()
    if reuse and found and found[0] and json.loads(found[0]).get("mark") == mark:
        info: dict[str, Any] = json.loads(found[0])["generated"]
        say(f"reusing template {name}")
    else:
        say(f"generating template {name} ({leads:,} leads, seed {seed})")
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                str(GENERATOR),
                f"--leads={leads}",
                f"--seed={seed}",
                f"--dbname={name}",
                "--replace",
            ],
            capture_output=True,
            text=True,
            check=False,
            env=child_env(admin, AICRM_HOME=os.environ["AICRM_HOME"]),
        )
        if done.returncode != 0:
            raise SystemExit(f"error: generate_legacy.py failed: {done.stderr.strip()}")
        info = json.loads(done.stdout)
        info["wall"] = round(time.monotonic() - started, 1)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name),
                    sql.Literal(json.dumps({"mark": mark, "generated": info})),
                )
            )
    with psycopg.connect(make_conninfo(admin, dbname=name)) as conn:
        size = conn.execute(DATABASE_SIZE).fetchone()
    info["size"] = str(size[0]) if size else "?"
    return info


def clone(admin: str, template: str, major: int) -> str:
    strategy = sql.SQL(" STRATEGY FILE_COPY") if major >= 15 else sql.SQL("")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(CLONE))
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
                sql.Identifier(CLONE), sql.Identifier(template), strategy
            )
        )
        conn.execute("CHECKPOINT")
    return make_conninfo(admin, dbname=CLONE)


def drop_clone(admin: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(CLONE))
        )


def run_side(side: str, conninfo: str) -> tuple[list[str], dict[str, str]]:
    if side == "aicrm":
        backups = OUT / "backups" / "bench_001"
        return (
            [sys.executable, "-m", "aicrm", "db", "migrate", "--target", "001", "--json"],
            child_env(conninfo, AICRM_HOME=os.environ["AICRM_HOME"], BACKUP_DIR=str(backups)),
        )
    psql = tools.find("psql").path
    env = child_env(conninfo)
    return (
        [
            str(psql),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            str(NAIVE),
            "--dbname",
            env["DATABASE_URL"],
        ],
        env,
    )


def measure(
    number: int,
    side: str,
    admin: str,
    template: str,
    major: int,
    interval: float,
    server_pid: int | None,
) -> Run:
    conninfo = clone(admin, template, major)
    with psycopg.connect(conninfo) as conn:
        oids = conn.execute(OIDS).fetchone()
    assert oids is not None
    command, env = run_side(side, conninfo)
    load = os.getloadavg()[0]
    say(f"run {number} {side}: {shlex.join(command[:6])} … (load {load:.2f})")
    with (
        CpuMeter(server_pid) as meter,
        LockWatch(admin, int(oids[0]), int(oids[1]), interval) as watch,
    ):
        started = time.perf_counter()
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, check=False, cwd=REPO
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"error: {side} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    report = json.loads(done.stdout) if side == "aicrm" else None
    if report is not None and report.get("backup"):
        Path(report["backup"]["path"]).unlink(missing_ok=True)
    with psycopg.connect(conninfo) as conn:
        converted = conn.execute(CONVERTED).fetchone()
    drop_clone(admin)
    run = Run(
        number,
        side,
        wall,
        watch.held,
        None if watch.first is None else max(0.0, watch.first - started),
        watch.polls,
        (wall / watch.polls) if watch.polls else 0.0,
        load,
        meter.others / wall if meter.private else None,
        int(converted[0]) if converted else 0,
        report,
    )
    say(
        f"  wall {run.wall:.2f} s, ACCESS EXCLUSIVE on leads held {run.lock_held:.2f} s "
        f"({watch.hits} of {watch.polls} samples)"
        + ("" if run.others is None else f"; others used {run.others:.2f} CPUs")
    )
    return run


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"


def machine(admin: str) -> dict[str, str]:
    with psycopg.connect(admin) as conn:
        row = conn.execute(SERVER).fetchone()
        busy = conn.execute(OTHER_BACKENDS).fetchone()
    assert row is not None
    mem_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "postgres": str(row[0]),
        "major": str(int(row[1]) // 10000),
        "settings": (
            f"shared_buffers {row[2]}, max_wal_size {row[3]}, work_mem {row[4]}, "
            f"maintenance_work_mem {row[5]}, synchronous_commit {row[6]}"
        ),
        "other_backends": str(busy[0] if busy else 0),
    }


def step_table(runs: list[Run]) -> list[str]:
    """Median seconds of each step of 001 over the aicrm runs."""
    reports = [r.report for r in runs if r.report]
    if not reports:
        return []
    names = [s["step"] for s in reports[0]["steps"]]
    lines = ["| 001 step (inside the transaction) | median | min | max |", "|---|---:|---:|---:|"]
    for index, name in enumerate(names):
        values = [rep["steps"][index]["seconds"] for rep in reports if len(rep["steps"]) > index]
        lines.append(
            f"| {name} | {statistics.median(values):.2f} s | {min(values):.2f} s "
            f"| {max(values):.2f} s |"
        )
    held = [rep["lock_held_seconds"] for rep in reports]
    backup = [rep["backup"]["seconds"] for rep in reports if rep.get("backup")]
    total = [rep["seconds"] for rep in reports]
    lines.append(
        f"| *all steps, locks to commit (engine's lock_held_seconds)* | "
        f"{statistics.median(held):.2f} s | {min(held):.2f} s | {max(held):.2f} s |"
    )
    # Before the transaction the engine runs the prerequisites, then the integrity
    # checks and the pg_dump backup side by side: the report's own timings.
    timings = [rep.get("timings", {}) for rep in reports]
    for label, values in (
        (
            "before the transaction, from the run's start (report's before_changes)",
            [t["before_changes"] for t in timings if "before_changes" in t],
        ),
        ("— of which integrity checks (beside the backup)",
         [t["integrity_checks"] for t in timings if "integrity_checks" in t]),
        ("— of which pg_dump backup, verified (beside the checks; its whole time)", backup),
        ("— of which waiting for the backup after the checks",
         [t["backup_after_checks"] for t in timings if "backup_after_checks" in t]),
    ):  # fmt: skip
        if values:
            lines.append(
                f"| *{label}* | {statistics.median(values):.2f} s | {min(values):.2f} s "
                f"| {max(values):.2f} s |"
            )
    after = [r.wall - (r.lock_first_seen or 0.0) - r.lock_held for r in runs]
    lines.append(
        "| *after the commit: ANALYZE, report, exit (wall minus lock released)* | "
        f"{statistics.median(after):.2f} s | {min(after):.2f} s | {max(after):.2f} s |"
    )
    lines.append(
        f"| *the engine's whole run (report's seconds)* | {statistics.median(total):.2f} s "
        f"| {min(total):.2f} s | {max(total):.2f} s |"
    )
    return lines


def section(
    runs: list[Run],
    args: argparse.Namespace,
    info: dict[str, Any],
    host: dict[str, str],
    source: str,
    started: datetime,
    loads: tuple[float, float],
) -> str:
    sides = {"aicrm": "`aicrm db migrate --target 001`", "naive": "`naive_001.sql` (psql)"}
    by_side = {side: [r for r in runs if r.side == side] for side in sides}
    counts = info["counts"]
    command = "python " + shlex.join(["bench/bench_001.py", *sys.argv[1:]])
    lines = [
        f"## {args.section}",
        "",
        f"Command: `{command}` (from the repository root, with the project's venv).",
        "",
        f"Machine: {host['nproc']} CPUs (nproc), {host['memory']} RAM, {host['os']}; "
        f"PostgreSQL {host['postgres']} ({source}; {host['settings']}). "
        f"Run {started:%Y-%m-%d %H:%M} UTC; load average (1 min) {loads[0]:.2f} before, "
        f"{loads[1]:.2f} after.",
        "",
        f"Data: {counts['leads']:,} leads, {counts['clients']:,} clients, "
        f"{counts['contacts']:,} contacts ({info['size']}), made by "
        f"`bench/generate_legacy.py --leads {args.leads} --seed {args.seed}` in "
        f"{info['seconds']:.0f} s, with 5 of each resolvable anomaly and no orphans. Each run "
        "works on a fresh copy (`CREATE DATABASE … TEMPLATE`, then `CHECKPOINT`); the sides "
        f"alternate A B A B …, {args.rounds} runs each.",
        "",
        f"Lock held = last minus first sample (every {args.interval * 1000:.0f} ms, from "
        "another connection) that saw a granted `AccessExclusiveLock` on `leads` held by "
        "another backend.",
        "",
        "| | " + " | ".join(sides.values()) + " |",
        "|---|" + "---:|" * len(sides),
        "| Total wall time, median (min–max) | "
        + " | ".join(spread([r.wall for r in by_side[s]]) for s in sides)
        + " |",
        "| ACCESS EXCLUSIVE on `leads` held, median (min–max) | "
        + " | ".join(spread([r.lock_held for r in by_side[s]]) for s in sides)
        + " |",
        "| Lock first seen after start, median | "
        + " | ".join(
            f"{statistics.median([r.lock_first_seen or 0.0 for r in by_side[s]]):.2f} s"
            for s in sides
        )
        + " |",
        "| Leads converted afterwards | "
        + " | ".join(f"{by_side[s][0].converted:,}" for s in sides)
        + " |",
        "",
        *summary(by_side["aicrm"], by_side["naive"]),
        *step_table(by_side["aicrm"]),
        "",
        "Every run (Load: the 1-minute load average before it, which counts the benchmark's "
        "own work; CPUs used by others: the machine's CPU time minus the benchmark's and its "
        "private server's, over the wall time):",
        "",
        "| Run | Side | Wall | Lock held | Lock first seen | Samples (mean gap) "
        "| Load | CPUs used by others |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        first = "—" if r.lock_first_seen is None else f"{r.lock_first_seen:.2f} s"
        others = "n/a" if r.others is None else f"{r.others:.2f}"
        lines.append(
            f"| {r.number} | {r.side} | {r.wall:.2f} s | {r.lock_held:.2f} s | {first} "
            f"| {r.polls} ({r.poll_interval * 1000:.1f} ms) | {r.load:.2f} | {others} |"
        )
    lines += ["", *noise_note(runs, host, loads), ""]
    return "\n".join(lines)


def summary(aicrm: list[Run], naive: list[Run]) -> list[str]:
    """One paragraph comparing the medians, from the numbers alone."""
    if not aicrm or not naive:
        return []
    lock_a = statistics.median(r.lock_held for r in aicrm)
    lock_n = statistics.median(r.lock_held for r in naive)
    wall_a = statistics.median(r.wall for r in aicrm)
    wall_n = statistics.median(r.wall for r in naive)
    first = statistics.median(r.lock_first_seen or 0.0 for r in aicrm)
    return [
        f"In short: 001 holds the ACCESS EXCLUSIVE lock on `leads` {abs(lock_a - lock_n):.2f} s "
        f"{'longer' if lock_a > lock_n else 'shorter'} than the naive script's whole run "
        f"({lock_a / lock_n:.2f}×; target: at most 1.00×, "
        f"{'not met' if lock_a > lock_n else 'met'} in this run) and takes {wall_a:.1f} s in "
        f"all against {wall_n:.1f} s; {first:.1f} s of that come before it locks anything "
        "(start-up, prerequisites, the integrity checks and the pg_dump backup side by "
        "side, then 001's steps that need no lock), while readers and writers go on.",
        "",
    ]


def noise_note(runs: list[Run], host: dict[str, str], loads: tuple[float, float]) -> list[str]:
    """A sentence on how quiet the machine was, from the CPU others used (or, when the
    server is shared, the load average, which counts the benchmark's own work too)."""
    measured = [r.others for r in runs if r.others is not None]
    if measured:
        worst, mean = max(measured), statistics.mean(measured)
        if worst <= 0.2:
            return [
                f"The machine was quiet: other processes used {mean:.2f} of the {host['nproc']} "
                f"CPUs on average during the runs (at most {worst:.2f})."
            ]
        return [
            f"Note: the machine was busy during this run: other processes (other engineers' "
            f"tests and benchmarks) used {mean:.2f} of the {host['nproc']} CPUs on average "
            f"during the runs, up to {worst:.2f}; the numbers are noisier, and slower, than on "
            "a quiet machine."
        ]
    busy = max([loads[0], loads[1], *(r.load for r in runs)])
    if busy <= 1.0:
        return []
    return [
        f"Note: the load average reached {busy:.2f} on {host['nproc']} CPUs (it counts the "
        "benchmark's own work too, and other work on the machine); the numbers may be noisy."
    ]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000, help="leads (default 1000000)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument(
        "--sides", default="aicrm,naive", help="comma-separated: aicrm, naive (default both)"
    )
    parser.add_argument("--interval", type=float, default=0.005, help="lock sampling (s)")
    parser.add_argument("--template", help="template database name [bench001_tpl_LEADS_sSEED]")
    parser.add_argument(
        "--reuse-template", action="store_true", help="reuse a template made by the same generator"
    )
    parser.add_argument("--keep-template", action="store_true", help="do not drop the template")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to update")
    parser.add_argument(
        "--section", help="section title [Migration 001 at 1M leads, or at N leads]"
    )
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args(argv)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if args.section is None:
        size = f"{args.leads // 1_000_000}M" if args.leads % 1_000_000 == 0 else f"{args.leads:,}"
        args.section = SECTION.format(size=size)
    if not sides or any(s not in ("aicrm", "naive") for s in sides):
        parser.error("--sides takes aicrm and/or naive")

    bench_home()
    admin, source = admin_conninfo()
    host = machine(admin)
    started = datetime.now(UTC)
    loads_before = os.getloadavg()[0]
    template = args.template or f"bench001_tpl_{args.leads}_s{args.seed}"
    info = ensure_template(admin, template, args.leads, args.seed, args.reuse_template)
    home = config.resolve().home
    running = embedded.running(home) if source == "embedded" else None
    server_pid = running.pid if running else None
    runs: list[Run] = []
    try:
        for round_number in range(1, args.rounds + 1):
            for side in sides:
                runs.append(
                    measure(
                        round_number,
                        side,
                        admin,
                        template,
                        int(host["major"]),
                        args.interval,
                        server_pid,
                    )
                )
    finally:
        drop_clone(admin)
        if not args.keep_template:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(template)
                    )
                )
        shutil.rmtree(OUT / "backups" / "bench_001", ignore_errors=True)
    if set(sides) != {"aicrm", "naive"}:
        say("only one side measured: nothing written")
        for r in runs:
            say(f"{r.number} {r.side}: wall {r.wall:.2f} s, lock held {r.lock_held:.2f} s")
        return 0
    body = section(runs, args, info, host, source, started, (loads_before, os.getloadavg()[0]))
    if args.no_write:
        print(body)
    else:
        write_section(args.results, args.section, body)
        say(f"wrote the section '{args.section}' of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
