"""Migration 001 under the CRM's traffic: transactional, online and naive, side by side.

    python bench/bench_online.py --leads 1000000 --reuse-template --keep-template

Makes (or reuses) the legacy template of bench/bench_001.py (generate_legacy.py:
``--leads`` leads, resolvable anomalies, no orphans), then for each mode clones it
(CREATE DATABASE … TEMPLATE, CHECKPOINT), starts the workload of bench/workload.py
on the clone (``--threads`` connections × ``--rate`` operations per second: reads,
inserts, updates, conversions), lets it warm up, runs the migration, lets it run
on for ``--cooldown`` seconds, stops it and checks every write it made:

* ``transactional``: ``python -m aicrm db migrate --target 001 --json``;
* ``online``: ``python -m aicrm db migrate --target 001 --online --json``;
* ``naive``: ``psql -f bench/naive_001.sql`` (bench/bench_001.py's baseline), under
  the same workload, run the way an operator would: it is one transaction, so a
  failed attempt (a deadlock with the workload) rolls back and the script is run
  again on the same database, up to ``--naive-attempts`` times; its time is the
  wall time of all its attempts until one succeeds, or "did not complete in N
  attempts". Then once more, on a fresh clone *without* the workload
  (``naive-quiet``), a separate and clearly labelled column: the script's time
  when nothing else runs, which is not the issue's comparison;
* ``none`` (opt-in, ``--modes online,none``): no migration at all, the workload
  alone on a fresh clone for as long as the previous mode took (``--idle-seconds``
  otherwise): what the machine does to the workload by itself, the floor that the
  other columns' latencies are read against (a virtual disk's fsync can stall every
  commit for hundreds of milliseconds with no migration running).

Reported per mode: the migration's wall time; the longest any workload operation
took (its wait included), the p99 and p50; operations over 200 ms; errors; writes
lost or wrong; how long an ACCESS EXCLUSIVE lock on leads was seen held (the
sampler of bench_001.py); and for the transactional mode what each part cost. The
table replaces the section "Online migration 001 under load at N leads" of
bench/RESULTS.md, leaving the other sections alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_001 as base  # noqa: E402  (the template, server and lock-sampler helpers)
from waits import WaitWatch  # noqa: E402
from workload import Workload  # noqa: E402

from aicrm.db import tools  # noqa: E402
from standby import LagWatch, make as make_standby  # noqa: E402

CLONE = "benchonline_run"
SECTION = "Online migration 001 under load at {size} leads"
MODES = ("transactional", "online", "naive")
COLUMNS = ("transactional", "online", "naive", "naive-quiet", "none")


def say(text: str) -> None:
    print(f"[bench_online] {text}", file=sys.stderr, flush=True)


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


def command(
    mode: str,
    conninfo: str,
    batch_seconds: float,
    max_replica_lag: float | None = None,
    idle_seconds: float = 60.0,
) -> tuple[list[str], dict[str, str]]:
    backups = base.OUT / "backups" / "bench_online"
    env = base.child_env(conninfo, AICRM_HOME=os.environ["AICRM_HOME"], BACKUP_DIR=str(backups))
    if mode == "none":  # no migration: the workload alone for that long
        return [sys.executable, "-c", f"import time; time.sleep({idle_seconds:.1f})"], env
    aicrm = [sys.executable, "-m", "aicrm", "db", "migrate", "--target", "001", "--json"]
    if mode == "transactional":
        return aicrm, env
    if mode == "online":
        bound = [] if max_replica_lag is None else ["--max-replica-lag", str(max_replica_lag)]
        return [*aicrm, "--online", "--batch-seconds", str(batch_seconds), *bound], env
    psql = str(tools.find("psql").path)
    return [
        psql,
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-f",
        str(base.NAIVE),
        "--dbname",
        env["DATABASE_URL"],
    ], env


def _failure_line(stderr: str) -> str:
    return next(
        (ln for ln in stderr.splitlines() if "ERROR" in ln or "error" in ln),
        stderr.strip()[-300:],
    ).strip()


def run_mode(
    mode: str, admin: str, template: str, major: int, args: argparse.Namespace, column: str = ""
) -> dict[str, Any]:
    """Run ``mode`` on a fresh clone under the workload (none when ``args.threads`` is
    0). The naive script is re-run after a failed attempt, on the same database and
    under the same workload, up to ``args.naive_attempts`` times; ``wall`` is the
    time of all its attempts together."""
    column = column or mode
    conninfo = clone(admin, template, major)
    with psycopg.connect(conninfo) as conn:
        oids = conn.execute(base.OIDS).fetchone()
    assert oids is not None
    # the throttle is the online backfill's; the other modes' lag is sampled unthrottled
    bound = args.max_replica_lag if args.standby is not None and mode == "online" else None
    argv, env = command(mode, conninfo, args.batch_seconds, bound, args.idle_seconds or 60.0)
    if mode == "online" and args.max_wal_rate:
        argv += ["--max-wal-rate", str(args.max_wal_rate)]
    if mode == "online" and args.throttle:
        argv += ["--throttle", str(args.throttle)]
    if mode == "online" and args.pause_ratio is not None:
        argv += ["--pause-ratio", str(args.pause_ratio)]
    attempts = args.naive_attempts if mode == "naive" else 1
    load_before = os.getloadavg()[0]
    say(f"{column}: {shlex.join(argv[:8])} … (load {load_before:.2f})")
    workload = Workload(conninfo, threads=args.threads, rate=args.rate, seed=args.seed)
    failures: list[dict[str, Any]] = []
    with workload:
        time.sleep(args.warmup)
        with (
            base.LockWatch(admin, int(oids[0]), int(oids[1]), args.interval) as watch,
            WaitWatch(conninfo, args.interval) as waits,
            LagWatch(admin, args.standby) as lags,
        ):
            started = time.perf_counter()
            t0 = time.monotonic()
            for attempt in range(1, attempts + 1):
                tried = time.perf_counter()
                done = subprocess.run(
                    argv, capture_output=True, text=True, env=env, check=False, cwd=base.REPO
                )
                if done.returncode == 0:
                    break
                failure = _failure_line(done.stderr)
                say(f"{column}: attempt {attempt} failed ({done.returncode}): {failure}")
                if mode != "naive":
                    raise SystemExit(f"error: {mode} failed: {done.stderr.strip()[-2000:]}")
                failures.append(
                    {"failed": failure, "seconds": time.perf_counter() - tried, "attempt": attempt}
                )
            wall = time.perf_counter() - started
        time.sleep(args.cooldown)
    result = workload.result()
    summary = result.summary()
    # Every write the workload made, checked on whichever side the database ended
    # (the naive script's failed attempts rolled back; its writes must all be there).
    checked = workload.verify()
    completed = done.returncode == 0
    report = json.loads(done.stdout) if done.stdout.strip().startswith("{") else None
    slowest = sorted(result.ops, key=lambda o: o.seconds, reverse=True)[:5]
    out: dict[str, Any] = {
        "mode": column,
        "completed": completed,
        "attempts": len(failures) + (1 if completed else 0),
        "failures": failures,
        "without_workload": args.threads == 0,
        "slowest": [(1000 * o.seconds, o.kind, o.started - t0) for o in slowest],
        "slowest_during": [waits.during(o.started, o.started + o.seconds) for o in slowest[:4]],
        "wall": wall,
        "lock_held": watch.held,
        "waits": waits.summary(),
        "wait_polls": waits.polls,
        "lock_sampled": watch.hits * wall / max(watch.polls, 1),
        "workload": summary,
        "check": checked,
        "load": (load_before, os.getloadavg()[0]),
        "report": _costs(report) if report else None,
        "stderr_tail": [line for line in done.stderr.splitlines() if "backfill" in line][-3:],
        "replica": None
        if args.standby is None
        else {
            "bound": bound,
            "primary_max": lags.primary_max,
            "standby_max": lags.standby_max,
            "samples": lags.samples,
            "error": lags.error,
        },
    }
    say(
        f"{column}: {'' if completed else 'DID NOT COMPLETE, '}{wall:.2f} s in "
        f"{len(failures) + int(completed)} attempt(s), max wait {summary['max_ms']:.0f} ms, p99 "
        f"{summary['p99_ms']:.1f} ms, lost {checked['lost']}, wrong {checked['wrong']}, "
        f"errors {summary['errors']}"
    )
    return out


def _costs(report: dict[str, Any]) -> dict[str, Any]:
    steps = report.get("steps") or []
    backup = (report.get("backup") or {}).get("seconds", 0.0)
    in_steps = sum(float(s["seconds"]) for s in steps)
    timings = {k: float(v) for k, v in (report.get("timings") or {}).items()}
    return {
        "seconds": float(report["seconds"]),
        "backup": float(backup),
        "steps": in_steps,
        "timings": timings,
        "lock_held": float(report.get("lock_held_seconds") or 0.0),
        "lock_wait": float(report.get("lock_wait_seconds") or 0.0),
        "lock_attempts": int(report.get("lock_attempts") or 0),
        "checks_and_prerequisites": float(report["seconds"]) - float(backup) - in_steps,
        "replica_wait": float(report.get("replica_wait_seconds") or 0.0),
        "replica_waits": int(report.get("replica_waits") or 0),
        "replica_lag_max": report.get("replica_lag_max"),
        "replica_note": report.get("replica_note"),
        "pace": float(report.get("pace_seconds") or 0.0),
        "pause_ratio": report.get("pause_ratio"),
        "phases": [
            (s["step"], float(s["seconds"])) for s in steps if s["step"].startswith("phase")
        ],
        "outcome": report.get("outcome"),
    }


def render(
    results: list[dict[str, Any]],
    info: dict[str, Any],
    host: dict[str, Any],
    args: argparse.Namespace,
    command_line: str,
) -> str:
    by = {r["mode"]: r for r in results}
    counts = info.get("counts", {})
    cols = [m for m in COLUMNS if m in by]
    head = {
        "transactional": "`aicrm db migrate` (transactional)",
        "online": "`aicrm db migrate --online`",
        "naive": "`naive_001.sql` (psql), under the workload",
        "naive-quiet": "`naive_001.sql` (psql), without the workload",
        "none": "no migration: the workload alone",
    }
    lines = [
        f"## {_title(args)}",
        "",
        f"Command: `{command_line}` (from the repository root, with the project's venv).",
        "",
        f"Machine: {host['machine']}; PostgreSQL {host['server']}. Run {host['when']}; load "
        f"average (1 min) {host['load'][0]:.2f} before, {host['load'][1]:.2f} after"
        + (
            f", with {args.cpu_hogs} busy-loop process(es) (`python -c 'while 1: pass'`) "
            "running beside the whole bench"
            if args.cpu_hogs
            else ""
        )
        + "; the machine is shared with other jobs, so it was loaded besides.",
        "",
        f"Data: {counts.get('leads', args.leads):,} leads, {counts.get('clients', 0):,} clients, "
        f"{counts.get('contacts', 0):,} contacts ({info.get('size', '?')}), the template of "
        "bench_001.py (`generate_legacy.py`, resolvable anomalies, no orphans); each mode on "
        "a fresh clone. All go to 001 only (`--target 001`). The naive script runs under the "
        "workload as an operator would run it: after a failed attempt (it is one transaction, "
        "so the attempt rolled back) it is run again on the same database, up to "
        f"{args.naive_attempts} attempts; its time is all its attempts' together. Its column "
        "*without the workload* is a separate run on a fresh clone with nothing else running.",
        "",
        f"Workload (bench/workload.py): {args.threads} connections × {args.rate:g} operations/s "
        "(30 % lead reads, 20 % client reads, 15 % lead inserts, 10 % contact inserts, 15 % "
        "lead updates, 10 % conversions through `bench_convert_lead`, which works on both "
        f"schemas), {args.warmup:g} s before the migration starts and {args.cooldown:g} s after "
        "it ends. Latency = each operation's own time (one transaction), waits included.",
        "",
        "| | " + " | ".join(head[m] for m in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]

    def row(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(by[m]) for m in cols) + " |")

    row("Total time of the migration (wall)", _total)
    row("Longest workload operation", lambda r: f"{r['workload']['max_ms']:,.0f} ms")
    row(
        "Attempts that failed under the workload",
        lambda r: (
            "— (no workload)"
            if r.get("without_workload")
            else str(len(r["failures"])) + "".join(f" ({f['failed']})" for f in r["failures"][:1])
        ),
    )
    row(
        "p99 / p50 latency (each operation's own time)",
        lambda r: f"{r['workload']['p99_ms']:.1f} / {r['workload']['p50_ms']:.1f} ms",
    )
    row(
        "p99 / max from the intended start (a stalled thread's backlog included)",
        lambda r: (
            f"{r['workload']['p99_intended_ms']:,.1f} / {r['workload']['max_intended_ms']:,.0f} ms"
        ),
    )
    row(
        "Operations over 200 ms",
        lambda r: f"{r['workload']['over_200ms']} of {r['workload']['operations']:,}",
    )
    row("Operations failed (errors)", lambda r: str(r["workload"]["errors"]))
    if args.replica:
        row(
            "Replica's longest replay lag, primary's view / standby's own (sampled every 0.1 s)",
            lambda r: f"{r['replica']['primary_max']:.2f} s / {r['replica']['standby_max']:.2f} s",
        )
        row(
            "The backfill's bound (--max-replica-lag) / waited for the replica",
            lambda r: (
                f"{r['replica']['bound']:g} s / {r['report']['replica_wait']:.2f} s in "
                f"{r['report']['replica_waits']} wait(s)"
                if r["replica"]["bound"] is not None and r.get("report")
                else "— (no throttle in this mode)"
            ),
        )
    row(
        "Writes lost / wrong (of checked)",
        lambda r: f"{r['check']['lost']} / {r['check']['wrong']} (of {r['check']['writes']:,})",
    )
    row(
        "ACCESS EXCLUSIVE on `leads` seen held: in all (samples) / first to last seen",
        lambda r: f"{r['lock_sampled']:.2f} s / {r['lock_held']:.2f} s",
    )
    lines.append("")
    if args.replica:
        lines += _replica(by, args)
    tx = by.get("transactional", {}).get("report")
    if tx:
        lines += _transactional_parts(tx)
    lines += _comparison(by)
    lines += _floor(by)
    on = by.get("online", {}).get("report")
    if on:
        lines += [
            "The online mode's phases (its report); locks: "
            f"{on['lock_attempts']} short transactions, {on['lock_wait']:.2f} s waited on lock "
            f"timeouts in all, switch held {on['lock_held']:.3f} s; the backfill paused "
            f"{on['pace']:.1f} s in all after its batches (--pause-ratio {on['pause_ratio']}):",
            "",
            "| phase | seconds |",
            "|---|---:|",
            *[f"| {name.removeprefix('phase ')} | {sec:.2f} |" for name, sec in on["phases"]],
            f"| before expand: prerequisites, integrity checks, backup ({on['backup']:.2f} s) | "
            f"{on['seconds'] - sum(s for _, s in on['phases']):.2f} |",
            "",
        ]
    lines.append(
        "Slowest operations (time after the migration's process started, when it started):"
    )
    lines.append("")
    for r in results:
        slow = ", ".join(f"{ms:.0f} ms {kind} at {at:+.1f} s" for ms, kind, at in r["slowest"][:4])
        errors = "; ".join(r["workload"]["error_samples"]) or "none"
        lines.append(f"* {r['mode']}: slowest operations {slow or 'none'}; errors: {errors}.")
        for (ms, kind, at), seen in zip(r["slowest"], r.get("slowest_during", []), strict=False):
            lines.append(f"  * during the {ms:.0f} ms {kind} at {at:+.1f} s: {seen}.")
    lines.append("")
    lines += _waits(results, args.interval)
    return "\n".join(lines)


def _replica(by: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """What the streaming standby saw (--replica), and the target: its lag below the
    online backfill's bound."""
    out = [
        "Replica: a streaming standby of the same server (`pg_basebackup -R` with a "
        "replication slot, on this machine: it shares the 2 cores), attached before the "
        "first mode. Its lag sampled every 0.1 s during each migration, from the primary "
        "(`pg_stat_replication.replay_lag`, what the throttle waits on) and from the standby "
        "(the age of its last replayed transaction while it is behind the primary's "
        f"position). The online mode runs with `--max-replica-lag {args.max_replica_lag:g}`; "
        "the transactional mode has no throttle (one transaction)."
    ]
    on = by.get("online")
    if on is not None and on.get("replica"):
        seen = max(on["replica"]["primary_max"], on["replica"]["standby_max"])
        verdict = "met" if seen < args.max_replica_lag else "not met"
        out.append(
            f"Target (the replica's longest lag during the online run below the bound): "
            f"{verdict} ({seen:.2f} s against {args.max_replica_lag:g} s)."
        )
    if args.leads < 1_000_000:
        out.append(
            "The issue's figure is at 1M leads: that run with a replica (`--leads 1000000 "
            "--replica`) is not done here; this one is at "
            f"{args.leads:,} leads."
        )
    return [line for text in out for line in (text, "")]


def _waits(results: list[dict[str, Any]], interval: float) -> list[str]:
    """What the workload waited on and which locks the migration held, per mode
    (bench/waits.py: pg_stat_activity and pg_locks sampled every ``interval``)."""
    lines = [
        f"What the workload waited on (pg_stat_activity.wait_event, pg_locks and "
        f"pg_blocking_pids sampled every {interval * 1000:g} ms; seconds = samples × interval, "
        "summed over waiting connections; at = first seen, from the migration's start), and "
        "the relation locks the migration's sessions held on leads, clients and contacts, in "
        "every mode:",
        "",
    ]
    for r in results:
        waits = r.get("waits") or {}
        seen = "; ".join(
            f"{what}: {sec:.2f} s (at {at:+.1f} s)" for what, sec, at in waits.get("waits", [])
        )
        held = "; ".join(f"{what}: {sec:.2f} s" for what, sec, _ in waits.get("held", []))
        lines.append(f"* {r['mode']}: waits: {seen or 'none seen'}. Held: {held or 'none seen'}.")
    lines.append("")
    return lines


def _total(r: dict[str, Any]) -> str:
    if r["mode"] == "none":
        return f"— (the workload alone, {r['wall']:.2f} s)"
    if not r.get("completed", True):
        return f"did not complete in {len(r['failures'])} attempts ({r['wall']:.2f} s)"
    tries = len(r["failures"]) + 1
    return f"{r['wall']:.2f} s" + (f" ({tries} attempts)" if tries > 1 else "")


def _transactional_parts(tx: dict[str, Any]) -> list[str]:
    t = tx.get("timings") or {}
    if "before_changes" not in t:  # a report from before the engine's timings
        return [
            "What the transactional mode's time is made of (its report):",
            "",
            "| part | seconds |",
            "|---|---:|",
            f"| prerequisites and integrity checks (report's total − backup − steps) | "
            f"{tx['checks_and_prerequisites']:.2f} |",
            f"| pg_dump backup, verified | {tx['backup']:.2f} |",
            f"| the changes: 001's steps | {tx['steps']:.2f} |",
            f"| the engine's whole run | {tx['seconds']:.2f} |",
            "",
        ]
    before = t["before_changes"]
    changes = t.get("changes", tx["seconds"] - before)
    return [
        "What the transactional mode's time is made of (its report). The verified backup "
        "and the integrity checks run side by side (pg_dump is a process of its own; the "
        "checks run on two connections sharing one snapshot), so their times overlap and do "
        "not add up: the first row is their wall time together.",
        "",
        "| part | seconds |",
        "|---|---:|",
        f"| before the changes, no locks (wall, from the run's start) | {before:.2f} |",
        f"| — of which prerequisites | {t.get('prerequisites', 0.0):.2f} |",
        f"| — of which integrity checks (beside the backup) | "
        f"{t.get('integrity_checks', 0.0):.2f} |",
        f"| — of which pg_dump backup, verified (beside the checks; its whole time) | "
        f"{tx['backup']:.2f} |",
        f"| — of which waiting for the backup after the checks | "
        f"{t.get('backup_after_checks', 0.0):.2f} |",
        f"| the changes: one transaction, locks to commit (001's steps: {tx['steps']:.2f}) | "
        f"{changes:.2f} |",
        f"| the engine's whole run | {tx['seconds']:.2f} |",
        "",
    ]


def _comparison(by: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's comparison: the transactional mode against the naive script, each
    under the same workload; the naive script's quiet time stated apart."""
    tx, naive, quiet = by.get("transactional"), by.get("naive"), by.get("naive-quiet")
    if tx is None or (naive is None and quiet is None):
        return []
    out = []
    if naive is not None:
        if naive.get("completed", True):
            verdict = (
                "met" if tx["wall"] <= naive["wall"] else "not met"
            ) + f" ({tx['wall']:.2f} s vs {naive['wall']:.2f} s)"
        else:
            verdict = (
                "the naive script has no time to compare against, it never completed; the "
                f"transactional mode completed in {tx['wall']:.2f} s, "
                + ("less" if tx["wall"] < naive["wall"] else "more")
                + f" than the naive script's failed attempts took together ({naive['wall']:.2f} s)"
            )
        out.append(
            f"**Transactional vs naive, each under the same workload:** `aicrm db migrate` "
            f"{tx['wall']:.2f} s against `naive_001.sql` {_total(naive)}. Target "
            f"(transactional no worse than naive): {verdict}."
        )
    if quiet is not None:
        out.append(
            f"Not the issue's comparison: the naive script without the workload took "
            f"{quiet['wall']:.2f} s (the transactional mode above ran under the workload)."
        )
    return [*(line for pair in zip(out, [""] * len(out), strict=True) for line in pair)]


def _floor(by: dict[str, dict[str, Any]]) -> list[str]:
    """The online mode's latencies against the workload's alone on the same machine."""
    on, none = by.get("online"), by.get("none")
    if on is None or none is None:
        return []
    a, b = on["workload"], none["workload"]
    return [
        f"**Online vs no migration, the same workload for about as long:** longest operation "
        f"{a['max_ms']:,.0f} ms against {b['max_ms']:,.0f} ms; operations over 200 ms "
        f"{a['over_200ms']} of {a['operations']:,} against {b['over_200ms']} of "
        f"{b['operations']:,}; p99 {a['p99_ms']:.1f} ms against {b['p99_ms']:.1f} ms.",
        "",
    ]


def write_section(text: str, title: str) -> None:
    current = base.RESULTS.read_text() if base.RESULTS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(current):
        updated = pattern.sub(lambda _m: text.rstrip() + "\n\n", current)
    else:
        updated = current.rstrip() + "\n\n" + text.rstrip() + "\n"
    base.RESULTS.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=float, default=25.0, help="operations/s per connection")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--cooldown", type=float, default=3.0)
    parser.add_argument("--batch-seconds", type=float, default=0.05)
    parser.add_argument("--interval", type=float, default=0.005, help="lock sampling (s)")
    parser.add_argument("--template")
    parser.add_argument("--reuse-template", action="store_true")
    parser.add_argument("--keep-template", action="store_true")
    parser.add_argument(
        "--naive-attempts",
        type=int,
        default=5,
        help="attempts of the naive script under the workload, on the same database, "
        "until one succeeds (default 5)",
    )
    parser.add_argument(
        "--no-naive-quiet",
        action="store_true",
        help="skip the naive script's separate run without the workload",
    )
    parser.add_argument(
        "--cpu-hogs",
        type=int,
        default=0,
        help="busy-loop processes (python -c 'while 1: pass') running beside the whole bench, "
        "for a loaded machine; its own section in RESULTS.md",
    )
    parser.add_argument(
        "--replica",
        action="store_true",
        help="attach a streaming standby (pg_basebackup -R; embedded server only), sample "
        "its replay lag during each migration, and run --online with --max-replica-lag",
    )
    parser.add_argument(
        "--max-replica-lag",
        type=float,
        default=1.0,
        help="with --replica: the online backfill's bound on the standby's lag (s, default 1)",
    )
    parser.add_argument(
        "--max-wal-rate",
        type=float,
        default=None,
        help="the online backfill's bound on its WAL rate (MB/s; default: none)",
    )
    parser.add_argument(
        "--throttle",
        type=float,
        default=None,
        help="the online backfill's pause after each batch (s; default: none)",
    )
    parser.add_argument(
        "--pause-ratio",
        type=float,
        default=None,
        help="the online backfill's pause after each batch, as a multiple of the batch's "
        "time (default: aicrm's, 1; 0: flat out)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help="the 'none' mode's length (s; default: the previous mode's wall time, else 60)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    args.standby = None  # the standby's conninfo, once made (--replica)
    hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(args.cpu_hogs)]
    try:
        _bench(args)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _title(args: argparse.Namespace) -> str:
    size = f"{args.leads // 1_000_000}M" if args.leads % 1_000_000 == 0 else f"{args.leads:,}"
    hogs = f", with {args.cpu_hogs} CPU hog(s) beside it" if args.cpu_hogs else ""
    replica = ", with a streaming replica" if args.replica else ""
    paced = "" if args.pause_ratio is None else f", --pause-ratio {args.pause_ratio:g}"
    return SECTION.format(size=size) + replica + hogs + paced


def _bench(args: argparse.Namespace) -> None:
    base.bench_home()
    admin, source = base.admin_conninfo()
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int"
        ).fetchone()
    assert row is not None
    major = int(row[1]) // 10000
    template = args.template or f"bench001_tpl_{args.leads}_s{args.seed}"
    info = base.ensure_template(admin, template, args.leads, args.seed, args.reuse_template)
    load = os.getloadavg()[0]
    results: list[dict[str, Any]] = []
    standby = None
    try:
        if args.replica:
            say("making a streaming standby (pg_basebackup -R)")
            standby = make_standby(admin)
            args.standby = standby.conninfo()
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            if mode == "none" and args.idle_seconds is None and results:
                args.idle_seconds = results[-1]["wall"]
            results.append(run_mode(mode, admin, template, major, args))
            if mode == "naive" and not args.no_naive_quiet:
                quiet = argparse.Namespace(**{**vars(args), "threads": 0, "naive_attempts": 1})
                outcome = run_mode(mode, admin, template, major, quiet, column="naive-quiet")
                if not outcome["completed"]:
                    raise SystemExit("error: naive_001.sql failed even without the workload")
                results.append(outcome)
    finally:
        if standby is not None:
            standby.destroy()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(CLONE))
            )
            if not args.keep_template:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(template)
                    )
                )
    host = {
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "server": f"{row[0]} ({source})",
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": (load, os.getloadavg()[0]),
    }
    command_line = "python bench/bench_online.py " + shlex.join(sys.argv[1:])
    text = render(results, info, host, args, command_line)
    print(json.dumps(results, indent=2, default=str))
    if not args.no_write:
        write_section(text, _title(args))
        say(f"wrote the section to {base.RESULTS}")
    else:
        print(text)


if __name__ == "__main__":
    main()
