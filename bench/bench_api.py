"""REST API throughput: ``GET /api/leads/{id}`` against the constant ``GET /api/ping``.

    python bench/bench_api.py --leads 10000 --duration 10 --rounds 3

Creates a database (``aicrm_bench_api``, dropped and made anew) on the server aicrm
would use (DATABASE_URL, DB_*, PG*, else the embedded PostgreSQL under AICRM_HOME,
bench/out/home when unset), migrates it to the newest schema (with the migrations of
``AICRM_WIP_MIGRATIONS`` when set), adds ``--leads`` leads and a read-scope API key,
then starts ONE server process (``uvicorn aicrm.asgi:app`` with ``--workers``;
connection pool ``--pool-size`` per worker) and loads it with ``wrk`` on loopback,
alternating the two endpoints round after round under the same settings:

A. ``GET /api/ping`` — a constant, no key, no database;
B. ``GET /api/ping/key`` — the same constant after checking the key (one indexed
   read of ``api_keys``);
C. ``GET /api/leads/{id}`` — with the key (``Authorization: Bearer``), a random one
   of the leads per request (a wrk Lua script).

The target: C's requests/s at least half of a constant endpoint's; both ratios
(C/A and C/B) are reported, and C's p99 latency at that load. Every response must
be a 200 (wrk's non-2xx count is checked). The result replaces the section
"REST API: GET /api/leads/{id} against a constant endpoint" of bench/RESULTS.md,
leaving the other sections alone. Needs ``wrk`` (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from aicrm import apikeys, config
from aicrm.db import target
from aicrm.migrate import Options, migrate

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
SECTION = "REST API: GET /api/leads/{id} against a constant endpoint"
DBNAME = "aicrm_bench_api"

SEED = """
INSERT INTO leads (first_name, last_name, email, company_name, source, status, attributes)
SELECT 'First' || i, 'Last' || i, 'lead' || i || '@example.com', 'Company ' || (i %% 500),
       (ARRAY['web', 'referral', 'event', 'partner'])[1 + i %% 4],
       (ARRAY['new', 'contacted', 'qualified'])[1 + i %% 3],
       jsonb_build_object('industry', (ARRAY['retail', 'software', 'health'])[1 + i %% 3],
                          'employees', i %% 1000)
FROM generate_series(1, %s) AS i
"""

PING_KEY_LUA = """
local header = { ["Authorization"] = "Bearer %s" }
function request()
  return wrk.format("GET", "/api/ping/key", header)
end
"""

LUA = """
local ids = {%s}
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
  return wrk.format("GET", "/api/leads/" .. ids[math.random(#ids)], header)
end
"""


TUNING = """\
What was tuned for C (the API's first cut, 2026-11-24, measured the same way: about
900 requests/s, 1.0 ms of worker CPU and 0.11 ms of database CPU per request, two round
trips and four hops between the event loop and worker threads):
- the key check and the read are one statement (`api_keys LEFT JOIN leads`) on an async
  connection (no worker thread), rows in binary; `last_used_at` is written at most once
  a minute; 2 worker processes (1 was slower: the database and wrk need the other core);
- GET by id is routed first, as a plain Starlette route sharing the documented route's
  code: FastAPI's walk over the routes and its parameter solving cost as much CPU as the
  read (0.49 → 0.20 ms of worker CPU per request);
- the record's jsonb columns are spliced into the response as PostgreSQL wrote them;
- the reads that arrive in the same turn of a worker's event loop share one statement
  (`unnest` of ids and key prefixes; aicrm/api/_batch.py): under load a worker has many in
  flight, and each round trip through async psycopg cost more CPU than the rest of the
  request. Each still gets its own key check and the record as committed after it
  arrived."""


@dataclass
class Load:
    endpoint: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx responses and socket errors
    server_cpu_ms: float = float("nan")  # per request: uvicorn's processes
    database_cpu_ms: float = float("nan")  # per request: the PostgreSQL backends


TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ticks(pids: list[int]) -> int:
    """User + system CPU ticks of these processes (/proc/PID/stat), 0 for gone ones."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def server_pids(parent: int) -> list[int]:
    found = [parent]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def backend_pids(url: str) -> list[int]:
    """The server's backends connected to the bench database (on this machine)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare(leads: int) -> tuple[str, str, list[str]]:
    """A fresh database with ``leads`` leads and a read key: (its conninfo, the token,
    a sample of lead ids)."""
    os.environ.setdefault("AICRM_HOME", str(BENCH / "out" / "home"))
    where = target()
    admin = make_conninfo(where.conninfo, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DBNAME))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
    url = make_conninfo(where.conninfo, dbname=DBNAME)
    bench_where = target(
        config.resolve({"DATABASE_URL": url, "AICRM_HOME": os.environ["AICRM_HOME"]})
    )
    wip = os.environ.get("AICRM_WIP_MIGRATIONS")
    with tempfile.TemporaryDirectory() as backups:
        migrate(
            Options(backup_dir=Path(backups), migrations_dir=Path(wip) if wip else None),
            bench_where,
        )
    with psycopg.connect(url) as conn:
        conn.execute(SEED, (leads,))
        _, token = apikeys.create_key(conn, "bench", "read")
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM leads ORDER BY random() LIMIT 1000")]
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return url, token, ids


def start_server(url: str, port: int, workers: int, pool_size: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in config.DB_VARIABLES}
    env.update(DATABASE_URL=url, AICRM_API_POOL_SIZE=str(pool_size))
    command = [
        sys.executable, "-m", "uvicorn", "aicrm.asgi:app", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--log-level", "warning",
        "--no-access-log",
    ]  # fmt: skip
    say("server: " + shlex.join(command[1:]))
    process = subprocess.Popen(command, env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while True:  # the bench polls the process it started (bounded); tests never do
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/ping", timeout=2) as r:
                if r.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the API server did not start")
        time.sleep(0.1)


def wrk(
    url: str, threads: int, connections: int, seconds: int, script: Path | None, label: str
) -> Load:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    for kind in re.findall(r"Socket errors: (.*)", out):  # connect, read, write, timeout
        errors += sum(int(n) for n in re.findall(r"\w+ (\d+)", kind) if n)
    return Load(label, rps, latency(out, "50%"), latency(out, "99%"), requests, errors)


def latency(out: str, percentile: str) -> float:
    match = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def machine(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version(), current_setting('shared_buffers'), "
                           "current_setting('max_connections')").fetchone()  # fmt: skip
    assert row is not None
    mem_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgres": str(row[0]).split(" on ")[0],
        "pg_settings": f"shared_buffers {row[1]}, max_connections {row[2]}",
        "wrk": wrk_version.strip(),
        "load_before": f"{os.getloadavg()[0]:.2f}",
    }


def section(args: argparse.Namespace, facts: dict[str, str], runs: list[Load], command: str) -> str:
    ping = [r for r in runs if r.endpoint == "ping"]
    keyed = [r for r in runs if r.endpoint == "ping-key"]
    lead = [r for r in runs if r.endpoint == "lead"]

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def verdict(ratio: float) -> str:
        return "met" if ratio >= 0.5 else "not met"

    def cost(side: list[Load]) -> float:
        return med([r.server_cpu_ms + r.database_cpu_ms for r in side])

    ratio = med([r.rps for r in lead]) / med([r.rps for r in ping])
    keyed_ratio = med([r.rps for r in lead]) / med([r.rps for r in keyed])
    sides = (ping, keyed, lead)
    lines = [
        f"## {SECTION}",
        "",
        f"Command: `{command}` (from the repository root, with the project's venv; wrk from "
        "Debian: `apt-get install -y wrk`).",
        "",
        f"Machine: {facts['nproc']} CPUs (nproc), {facts['memory']} RAM, {facts['os']}, Python "
        f"{facts['python']}; {facts['postgres']} ({facts['pg_settings']}) on the same machine; "
        f"{facts['wrk']}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average (1 min) "
        f"{facts['load_before']} before, {os.getloadavg()[0]:.2f} after. Server, database and "
        "load generator share the two cores, with whatever else runs on the machine (the "
        "sides alternate so that it weighs on each alike).",
        "",
        f"Server: one `uvicorn aicrm.asgi:app` with {args.workers} worker process(es), "
        f"connection pool of {args.pool_size} per worker, httptools, no access log. Load: "
        f"`wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency` on "
        f"127.0.0.1, the three endpoints alternating, {args.rounds} rounds each, after a "
        f"{args.warmup} s warm-up of each. Data: {args.leads:,} leads; each lead request "
        "asks for one of 1,000 of them at random, with a read-scope key.",
        "",
        "The rounds alternate A B C, C B A, ….",
        "",
        "| | A. `GET /api/ping` (constant, no key) | B. `GET /api/ping/key` (constant, key "
        "checked) | C. `GET /api/leads/{id}` (key + lead) |",
        "|---|---:|---:|---:|",
        "| requests/s, median of rounds | "
        + " | ".join(f"{med([r.rps for r in side]):,.0f}" for side in sides)
        + " |",
        "| requests/s, each round | "
        + " | ".join(", ".join(f"{r.rps:,.0f}" for r in side) for side in sides)
        + " |",
        "| p50 latency, median | "
        + " | ".join(f"{med([r.p50_ms for r in side]):.2f} ms" for side in sides)
        + " |",
        "| p99 latency, median (worst round) | "
        + " | ".join(
            f"{med([r.p99_ms for r in side]):.2f} ms ({max(r.p99_ms for r in side):.2f})"
            for side in sides
        )
        + " |",
        "| CPU per request: server (uvicorn workers), median | "
        + " | ".join(f"{med([r.server_cpu_ms for r in side]):.3f} ms" for side in sides)
        + " |",
        "| CPU per request: PostgreSQL backends, median | "
        + " | ".join(f"{med([r.database_cpu_ms for r in side]):.3f} ms" for side in sides)
        + " |",
        "| non-2xx responses or socket errors | "
        + " | ".join(str(sum(r.errors for r in side)) for side in sides)
        + " |",
        "",
        f"Ratio C/A (lead against the constant without a key): **{ratio:.2f}** (target ≥ 0.5: "
        f"{verdict(ratio)}). Ratio C/B (lead against the constant with the key check): "
        f"**{keyed_ratio:.2f}** ({verdict(keyed_ratio)}). p99 of C at its load: "
        f"{med([r.p99_ms for r in lead]):.2f} ms.",
        "",
        "CPU per request (from /proc, server processes and the database's backends, "
        "whatever else runs on the machine) is the steadier measure on a shared machine: "
        f"C costs {cost(lead) / cost(ping):.1f}× A and {cost(lead) / cost(keyed):.1f}× B.",
        "",
        TUNING,
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, title: str, body: str) -> None:
    """Replace the ``## title`` section of ``path`` with ``body`` (append it if absent),
    keeping every other section as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {title}"), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        new = "\n".join(lines[:start]).rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
        if lines[end:]:
            new += "\n" + "\n".join(lines[end:]).rstrip("\n") + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per endpoint")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--pool-size", type=int, default=8, help="connections per worker")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    command = "python bench/bench_api.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    say(f"preparing {args.leads:,} leads")
    url, token, ids = prepare(args.leads)
    facts = machine(url)
    port = free_port()
    server = start_server(url, port, args.workers, args.pool_size)
    base = f"http://127.0.0.1:{port}"
    runs: list[Load] = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "lead.lua"
        script.write_text(LUA % (", ".join(f'"{i}"' for i in ids), token))
        keyed = Path(tmp) / "ping_key.lua"
        keyed.write_text(PING_KEY_LUA % token)
        try:
            plan = [
                ("ping", f"{base}/api/ping", None),
                ("ping-key", base, keyed),
                ("lead", base, script),
            ]
            for label, url_, lua in plan:
                wrk(url_, args.threads, args.connections, args.warmup, lua, label)
            for number in range(args.rounds):
                for label, url_, lua in plan if number % 2 == 0 else plan[::-1]:
                    workers, backends = server_pids(server.pid), backend_pids(url)
                    before = (cpu_ticks(workers), cpu_ticks(backends))
                    load = wrk(url_, args.threads, args.connections, args.duration, lua, label)
                    load.server_cpu_ms = (cpu_ticks(workers) - before[0]) * TICK_MS / load.requests
                    # Backends a pool opened during the run count whole (they are new).
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
    body = section(args, facts, runs, command)
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
