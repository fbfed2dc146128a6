"""A lead's timeline over the API beside ``GET /api/leads/{id}``, in one run (issue #17).

    python bench/bench_timeline.py --leads 10000 --duration 10 --rounds 3

Creates a database (``aicrm_bench_timeline``, dropped and made anew) as
bench/bench_api.py does, with ``--leads`` leads and two activities on each, then gives
ONE lead 1,000 activities and 1,000 history rows (spread over months, so the two
sources interleave). One server process (``uvicorn aicrm.asgi:app``, ``--workers``)
is loaded with ``wrk`` on loopback at ``--connections`` connections, alternating:

L. ``GET /api/leads/{id}`` of that lead (the API's hot path);
T. ``GET /api/leads/{id}/timeline`` of that lead, 50 entries a page: one of its first
   20 pages at random per request (cursors read beforehand), so deep pages count too.

The target: T's p99 latency under 20 ms. Every response must be a 200. The result
replaces the section "Timeline of a lead with 1,000 activities and 1,000 history rows"
of bench/RESULTS.md, leaving the other sections alone. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api
from bench_api import (
    RESULTS,
    Load,
    backend_pids,
    cpu_ticks,
    free_port,
    machine,
    say,
    server_pids,
    start_server,
    write_section,
    wrk,
)

SECTION = "Timeline of a lead with 1,000 activities and 1,000 history rows"
DBNAME = "aicrm_bench_timeline"
TICK_MS = bench_api.TICK_MS

# Two activities on every lead, so the index holds far more than the one lead's.
BACKGROUND = """
INSERT INTO activities (kind, subject, body, lead_id, author, created_at)
SELECT k.kind, 'Activity ' || k.n, 'Body of ' || l.id, l.id, 'bench',
       now() - (k.n * interval '3 days')
FROM leads l CROSS JOIN (VALUES ('note', 1), ('call', 2)) AS k (kind, n)
"""
# The lead of the bench: 1,000 activities and 1,000 history rows, interleaved in time.
ACTIVITIES = """
INSERT INTO activities (kind, subject, body, lead_id, author, due_at, attributes, created_at)
SELECT (ARRAY['note', 'call', 'email', 'meeting', 'task'])[1 + i %% 5], 'Activity ' || i,
       repeat('Notes of the conversation. ', 8), %s, 'bench',
       CASE WHEN i %% 5 = 4 THEN now() + i * interval '1 hour' END,
       jsonb_build_object('duration_min', i %% 60), now() - i * interval '61 minutes'
FROM generate_series(1, 1000) AS i
"""
HISTORY = """
INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, changes)
SELECT 'leads', %s, 'update', now() - i * interval '59 minutes', 'bench',
       jsonb_build_object('attributes', jsonb_build_array(
           jsonb_build_object('step', i - 1), jsonb_build_object('step', i)))
FROM generate_series(1, 999) AS i
"""

LUA = """
local paths = {%s}
local header = { ["Authorization"] = "Bearer %s" }
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() + (seed or 0) * 7919)
end
function request()
  return wrk.format("GET", paths[math.random(#paths)], header)
end
"""


def prepare(leads: int) -> tuple[str, str, str, dict[str, int]]:
    """bench_api's database under another name, plus the activities and the history:
    (its conninfo, a read token, the lead's id, counts)."""
    bench_api.DBNAME = DBNAME  # prepare() drops and creates the database by this name
    url, token, ids = bench_api.prepare(leads)
    lead = ids[0]
    with psycopg.connect(url) as conn:
        conn.execute(BACKGROUND)
        conn.execute(ACTIVITIES, (lead,))
        conn.execute(HISTORY, (lead,))
        counts = {
            "activities": conn.execute(
                "SELECT count(*) FROM activities WHERE lead_id = %s", (lead,)
            ).fetchone()[0],  # type: ignore[index]
            "history": conn.execute(
                "SELECT count(*) FROM crm_history WHERE table_name = 'leads' AND row_id = %s",
                (lead,),
            ).fetchone()[0],  # type: ignore[index]
            "all_activities": conn.execute("SELECT count(*) FROM activities").fetchone()[0],  # type: ignore[index]
        }
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return url, token, lead, counts


def page_paths(base: str, token: str, lead: str, pages: int) -> list[str]:
    """The paths of the lead's first ``pages`` timeline pages (following the cursors)."""
    paths, cursor = [], None
    for _ in range(pages):
        path = f"/api/leads/{lead}/timeline?limit=50"
        if cursor:
            path += "&cursor=" + urllib.parse.quote(cursor)
        request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.load(answer)
        assert len(body["items"]) == 50, body
        paths.append(path)
        cursor = body["next_cursor"]
    return paths


def section(
    args: argparse.Namespace, facts: dict[str, str], runs: list[Load], command: str,
    counts: dict[str, int],
) -> str:  # fmt: skip
    def med(values: list[float]) -> float:
        return statistics.median(values)

    lead = [r for r in runs if r.endpoint == "lead"]
    feed = [r for r in runs if r.endpoint == "timeline"]
    sides = (lead, feed)
    p99 = med([r.p99_ms for r in feed])
    worst = max(r.p99_ms for r in feed)
    return "\n".join([
        f"## {SECTION}",
        "",
        f"Command: `{command}` (from the repository root, with the project's venv; wrk from "
        "Debian).",
        "",
        f"Machine: {facts['nproc']} CPUs (nproc), {facts['memory']} RAM, {facts['os']}, Python "
        f"{facts['python']}; {facts['postgres']} ({facts['pg_settings']}) on the same machine; "
        f"{facts['wrk']}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average (1 min) "
        f"{facts['load_before']} before, {os.getloadavg()[0]:.2f} after: a shared machine, "
        "other work ran beside it (the sides alternate so that it weighs on each alike).",
        "",
        f"Server: one `uvicorn aicrm.asgi:app` with {args.workers} worker process(es), "
        f"pool of {args.pool_size} per worker. Load: `wrk -t1 -c{args.connections} "
        f"-d{args.duration}s --latency`, the two endpoints alternating, {args.rounds} rounds "
        f"each, after a {args.warmup} s warm-up. Data: {args.leads:,} leads with 2 activities "
        f"each ({counts['all_activities']:,} activities in all); the lead of the bench has "
        f"{counts['activities']:,} activities and {counts['history']:,} history rows. T asks "
        "for one of the lead's first 20 timeline pages (50 entries each) at random.",
        "",
        "| | L. `GET /api/leads/{id}` | T. `GET /api/leads/{id}/timeline` |",
        "|---|---:|---:|",
        "| requests/s, median of rounds | "
        + " | ".join(f"{med([r.rps for r in side]):,.0f}" for side in sides) + " |",
        "| p50 latency, median | "
        + " | ".join(f"{med([r.p50_ms for r in side]):.2f} ms" for side in sides) + " |",
        "| p99 latency, median (worst round) | "
        + " | ".join(
            f"{med([r.p99_ms for r in side]):.2f} ms ({max(r.p99_ms for r in side):.2f})"
            for side in sides
        ) + " |",
        "| CPU per request: server, median | "
        + " | ".join(f"{med([r.server_cpu_ms for r in side]):.3f} ms" for side in sides) + " |",
        "| CPU per request: PostgreSQL, median | "
        + " | ".join(f"{med([r.database_cpu_ms for r in side]):.3f} ms" for side in sides)
        + " |",
        "| non-2xx responses or socket errors | "
        + " | ".join(str(sum(r.errors for r in side)) for side in sides) + " |",
        "",
        f"T's p99: **{p99:.2f} ms** (worst round {worst:.2f} ms); target < 20 ms: "
        f"{'met' if p99 < 20 else 'not met'}.",
        "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per endpoint")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--pool-size", type=int, default=4, help="connections per worker")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    command = "python bench/bench_timeline.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    say(f"preparing {args.leads:,} leads and the lead's timeline")
    url, token, lead, counts = prepare(args.leads)
    facts = machine(url)
    port = free_port()
    server = start_server(url, port, args.workers, args.pool_size)
    base = f"http://127.0.0.1:{port}"
    runs: list[Load] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            paths = page_paths(base, token, lead, 20)
            scripts = {}
            for label, chosen in (("lead", [f"/api/leads/{lead}"]), ("timeline", paths)):
                scripts[label] = Path(tmp) / f"{label}.lua"
                scripts[label].write_text(LUA % (", ".join(f'"{p}"' for p in chosen), token))
            plan = [("lead", scripts["lead"]), ("timeline", scripts["timeline"])]
            for label, lua in plan:
                wrk(base, 1, args.connections, args.warmup, lua, label)
            for number in range(args.rounds):
                for label, lua in plan if number % 2 == 0 else plan[::-1]:
                    workers, backends = server_pids(server.pid), backend_pids(url)
                    before = (cpu_ticks(workers), cpu_ticks(backends))
                    load = wrk(base, 1, args.connections, args.duration, lua, label)
                    load.server_cpu_ms = (cpu_ticks(workers) - before[0]) * TICK_MS / load.requests
                    backends = sorted(set(backends) | set(backend_pids(url)))
                    load.database_cpu_ms = (
                        (cpu_ticks(backends) - before[1]) * TICK_MS / load.requests
                    )
                    say(
                        f"round {number + 1} {label}: {load.rps:,.0f} req/s, p50 "
                        f"{load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, errors {load.errors}"
                    )
                    runs.append(load)
        finally:
            server.terminate()
            server.wait(timeout=30)
    body = section(args, facts, runs, command, counts)
    print(body)
    if not args.no_write:
        write_section(args.results, SECTION, body)
        say(f"wrote the section to {args.results}")
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DBNAME))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
