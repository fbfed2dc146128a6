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
* ``naive``: ``psql -f bench/naive_001.sql`` (bench/bench_001.py's baseline).

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
from workload import Workload  # noqa: E402

from aicrm.db import tools  # noqa: E402

CLONE = "benchonline_run"
SECTION = "Online migration 001 under load at {size} leads"
MODES = ("transactional", "online", "naive")


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


def command(mode: str, conninfo: str, batch_seconds: float) -> tuple[list[str], dict[str, str]]:
    backups = base.OUT / "backups" / "bench_online"
    env = base.child_env(conninfo, AICRM_HOME=os.environ["AICRM_HOME"], BACKUP_DIR=str(backups))
    aicrm = [sys.executable, "-m", "aicrm", "db", "migrate", "--target", "001", "--json"]
    if mode == "transactional":
        return aicrm, env
    if mode == "online":
        return [*aicrm, "--online", "--batch-seconds", str(batch_seconds)], env
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


def run_mode(
    mode: str, admin: str, template: str, major: int, args: argparse.Namespace
) -> dict[str, Any]:
    conninfo = clone(admin, template, major)
    with psycopg.connect(conninfo) as conn:
        oids = conn.execute(base.OIDS).fetchone()
    assert oids is not None
    argv, env = command(mode, conninfo, args.batch_seconds)
    load_before = os.getloadavg()[0]
    say(f"{mode}: {shlex.join(argv[:8])} … (load {load_before:.2f})")
    workload = Workload(conninfo, threads=args.threads, rate=args.rate, seed=args.seed)
    with workload:
        time.sleep(args.warmup)
        with base.LockWatch(admin, int(oids[0]), int(oids[1]), args.interval) as watch:
            started = time.perf_counter()
            t0 = time.monotonic()
            done = subprocess.run(
                argv, capture_output=True, text=True, env=env, check=False, cwd=base.REPO
            )
            wall = time.perf_counter() - started
        time.sleep(args.cooldown)
    result = workload.result()
    if done.returncode != 0:
        failure = next(
            (ln for ln in done.stderr.splitlines() if "ERROR" in ln or "error" in ln),
            done.stderr.strip()[-300:],
        )
        say(f"{mode}: failed ({done.returncode}): {failure}")
        if mode != "naive":
            raise SystemExit(f"error: {mode} failed: {done.stderr.strip()[-2000:]}")
        return {
            "mode": mode,
            "failed": failure.strip(),
            "wall": wall,
            "workload": result.summary(),
            "check": workload.verify(),
        }
    summary = result.summary()
    checked = workload.verify()
    report = json.loads(done.stdout) if done.stdout.strip().startswith("{") else None
    slowest = sorted(result.ops, key=lambda o: o.seconds, reverse=True)[:5]
    out: dict[str, Any] = {
        "mode": mode,
        "slowest": [(1000 * o.seconds, o.kind, o.started - t0) for o in slowest],
        "wall": wall,
        "lock_held": watch.held,
        "lock_sampled": watch.hits * wall / max(watch.polls, 1),
        "workload": summary,
        "check": checked,
        "load": (load_before, os.getloadavg()[0]),
        "report": _costs(report) if report else None,
        "stderr_tail": [line for line in done.stderr.splitlines() if "backfill" in line][-3:],
    }
    say(
        f"{mode}: {wall:.2f} s, max wait {summary['max_ms']:.0f} ms, p99 "
        f"{summary['p99_ms']:.1f} ms, lost {checked['lost']}, wrong {checked['wrong']}, "
        f"errors {summary['errors']}"
    )
    return out


def _costs(report: dict[str, Any]) -> dict[str, Any]:
    steps = report.get("steps") or []
    backup = (report.get("backup") or {}).get("seconds", 0.0)
    in_steps = sum(float(s["seconds"]) for s in steps)
    return {
        "seconds": float(report["seconds"]),
        "backup": float(backup),
        "steps": in_steps,
        "lock_held": float(report.get("lock_held_seconds") or 0.0),
        "lock_wait": float(report.get("lock_wait_seconds") or 0.0),
        "lock_attempts": int(report.get("lock_attempts") or 0),
        "checks_and_prerequisites": float(report["seconds"]) - float(backup) - in_steps,
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
    size = f"{args.leads // 1_000_000}M" if args.leads % 1_000_000 == 0 else f"{args.leads:,}"
    by = {r["mode"]: r for r in results}
    counts = info.get("counts", {})
    cols = [m for m in MODES if m in by]
    head = {
        "transactional": "`aicrm db migrate` (transactional)",
        "online": "`aicrm db migrate --online`",
        "naive": "`naive_001.sql` (psql)",
    }
    lines = [
        f"## {SECTION.format(size=size)}",
        "",
        f"Command: `{command_line}` (from the repository root, with the project's venv).",
        "",
        f"Machine: {host['machine']}; PostgreSQL {host['server']}. Run {host['when']}; load "
        f"average (1 min) {host['load'][0]:.2f} before, {host['load'][1]:.2f} after.",
        "",
        f"Data: {counts.get('leads', args.leads):,} leads, {counts.get('clients', 0):,} clients, "
        f"{counts.get('contacts', 0):,} contacts ({info.get('size', '?')}), the template of "
        "bench_001.py (`generate_legacy.py`, resolvable anomalies, no orphans); each mode on "
        "a fresh clone. All three go to 001 only (`--target 001`).",
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

    row(
        "Total time of the migration (wall)",
        lambda r: (
            f"{r['wall']:.2f} s" + (" (without the workload)" if r.get("without_workload") else "")
        ),
    )
    row("Longest workload operation", lambda r: f"{r['workload']['max_ms']:,.0f} ms")
    row(
        "Attempts that failed under the workload",
        lambda r: str(len(r["failures"])) + "".join(f" ({f['failed']})" for f in r["failures"][:1]),
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
    row(
        "Writes lost / wrong (of checked)",
        lambda r: f"{r['check']['lost']} / {r['check']['wrong']} (of {r['check']['writes']:,})",
    )
    row(
        "ACCESS EXCLUSIVE on `leads` seen held: in all (samples) / first to last seen",
        lambda r: f"{r['lock_sampled']:.2f} s / {r['lock_held']:.2f} s",
    )
    lines.append("")
    tx = by.get("transactional", {}).get("report")
    if tx:
        lines += [
            "What the transactional mode's time is made of (its report):",
            "",
            "| part | seconds |",
            "|---|---:|",
            f"| prerequisites and integrity checks (no locks; report's total − backup − steps) | "
            f"{tx['checks_and_prerequisites']:.2f} |",
            f"| pg_dump backup, verified | {tx['backup']:.2f} |",
            f"| the changes: 001's steps, under its locks, to commit | {tx['steps']:.2f} |",
            f"| the engine's whole run | {tx['seconds']:.2f} |",
            "",
        ]
    on = by.get("online", {}).get("report")
    if on:
        lines += [
            "The online mode's phases (its report); locks: "
            f"{on['lock_attempts']} short transactions, {on['lock_wait']:.2f} s waited on lock "
            f"timeouts in all, switch held {on['lock_held']:.3f} s:",
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
        lines.append(f"* {r['mode']}: slowest operations {slow}; errors: {errors}.")
    lines.append("")
    return "\n".join(lines)


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
    parser.add_argument("--attempts", type=int, default=3, help="tries of the naive script")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
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
    results = []
    failures: dict[str, list[dict[str, Any]]] = {}
    try:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            for _attempt in range(args.attempts):
                outcome = run_mode(mode, admin, template, major, args)
                if "failed" not in outcome:
                    outcome["failures"] = failures.get(mode, [])
                    results.append(outcome)
                    break
                failures.setdefault(mode, []).append(outcome)
            else:
                say(f"{mode}: failed {args.attempts} times under the workload; once without it")
                quiet = argparse.Namespace(**{**vars(args), "threads": 0})
                outcome = run_mode(mode, admin, template, major, quiet)
                if "failed" in outcome:
                    raise SystemExit(f"error: {mode} failed even without the workload")
                outcome["failures"] = failures[mode]
                outcome["without_workload"] = True
                results.append(outcome)
    finally:
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
        size = f"{args.leads // 1_000_000}M" if args.leads % 1_000_000 == 0 else f"{args.leads:,}"
        write_section(text, SECTION.format(size=size))
        say(f"wrote the section to {base.RESULTS}")
    else:
        print(text)


if __name__ == "__main__":
    main()
