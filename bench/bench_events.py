"""The event stream and webhooks: delivery throughput, and what the outbox costs.

    python bench/bench_events.py                       # both, default sizes
    python bench/bench_events.py --events 20000 --workers 4 --duration 15 --rounds 3

Two measurements in one run:

deliver  ``--events`` leads inserted in one transaction into a CRM database with one
         subscription to ``*`` on a local receiver (``--receivers`` asyncio HTTP/1.1
         processes sharing a port, each checking every signature);
         ``--worker-processes`` ``aicrm webhooks run`` processes (``--concurrency``,
         ``--batch``, ``--lanes``) already listening. Throughput is events received /
         (last received - commit), end to end; CPU per event of the workers, the
         receivers and the PostgreSQL server's processes over the same span (from
         /proc: the machine's load does not inflate it as it does the rate).
         Target ≥ 2,000/s.
convert  ``aicrm.crm.conversion.convert_lead`` by ``--workers`` threads for
         ``--duration`` seconds (bench_crm.py's single-conversion workload) on a fresh
         copy of the same seeded database in three variants, alternating A B C A B C …:
         A no outbox (the same database taken back to migration 012, before the
         outbox, by ``aicrm db downgrade``: since 016 the history's triggers write
         the events, so there is no event trigger to switch off), B the outbox with no
         subscription,
         C the outbox with a subscription to every event (no worker running, so no
         NOTIFY since migration 014, and no deliveries written: since 015 the worker
         fans events out), D as C with a worker registered as asleep (every
         transaction sends a NOTIFY, as all did before 014; a running worker is asleep
         only while it has nothing to do). Target: B and C ≥ 0.85× A
         (the outbox adds ≤ 15 %).

The server is the one aicrm would use (bench_crm.py's rules: DATABASE_URL, else the
embedded PostgreSQL under AICRM_HOME, bench/out/home when unset). The results
replace this benchmark's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from bench_crm import (
    OUT,
    RESULTS,
    Server,
    aicrm_conversions,
    copy_of,
    create_database,
    drop_database,
    find_server,
    machine,
    say,
    seeded_template,
    write_section,
)

from aicrm import config, events
from aicrm.db import target
from aicrm.migrate import Options, downgrade

TITLE = "Event stream: webhook delivery and the outbox's cost to conversions"
SECRET = "whsec_bench-secret-0123456789"
# The last migration before the outbox (013): the "no outbox" variant's schema.
BEFORE_OUTBOX = 12
SUBSCRIBE = "INSERT INTO webhook_subscriptions (url, events, secret) VALUES (%s, %s, %s)"
INSERT_LEADS = """
INSERT INTO leads (first_name, email, source)
SELECT 'E' || g, 'event' || g || '@bench.example', 'bench' FROM generate_series(1, %s) AS g
"""
DELIVERED = "SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'"
ASLEEP = "INSERT INTO webhook_sleepers (pid) VALUES (0)"  # no session has pid 0


# --- the receiver ---------------------------------------------------------------------


class Receiving(asyncio.Protocol):
    """One keep-alive connection: requests parsed from a buffer (asyncio's protocol
    callbacks, not streams: a third of the CPU per request), each signature checked."""

    def __init__(self, slot: int, counts: Any, bad: Any, last: Any) -> None:
        self.slot, self.counts, self.bad, self.last = slot, counts, bad, last
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answered = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            headers = dict(
                line.split(": ", 1)
                for line in self.buffer[:end].decode("latin-1").split("\r\n")[1:]
                if ": " in line
            )
            length = int(headers.get("Content-Length", "0"))
            if len(self.buffer) < end + 4 + length:
                break
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            try:
                events.verify(SECRET, headers.get(events.HEADER), body)
            except Exception:
                self.bad[self.slot] += 1
            answered += 1
        if answered and self.transport is not None:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * answered)
            self.counts[self.slot] += answered
            self.last[self.slot] = time.time()


def receiver_process(slot: int, port: int, counts: Any, bad: Any, last: Any, ready: Any) -> None:
    """An HTTP/1.1 keep-alive receiver process; several share ``port`` (SO_REUSEPORT)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Receiving(slot, counts, bad, last), "127.0.0.1", port, reuse_port=True
        )
        ready.release()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """A process's CPU seconds (user + system) so far, from /proc (0 when unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(conn: psycopg.Connection[Any]) -> list[int]:
    """The PostgreSQL server's processes (the postmaster's children), when it runs here."""
    try:
        with open(f"/proc/{conn.info.backend_pid}/stat") as handle:
            parent = int(handle.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == parent:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def bench_deliver(server: Server, template: str, args: argparse.Namespace) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    n = args.receivers
    counts, bad, last = context.Array("q", n), context.Array("q", n), context.Array("d", n)
    ready = context.Semaphore(0)
    port = free_port()
    receivers = [
        context.Process(target=receiver_process, args=(slot, port, counts, bad, last, ready))
        for slot in range(n)
    ]
    for receiver in receivers:
        receiver.start()
    for _ in receivers:
        ready.acquire(timeout=60)
    try:
        with copy_of(server, template, "events") as conninfo:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(SUBSCRIBE, (f"http://127.0.0.1:{port}/hook", ["*"], SECRET))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DB_"))}
            env["DATABASE_URL"] = conninfo
            command = [sys.executable, "-m", "aicrm", "webhooks", "run", "--concurrency",
                       str(args.concurrency), "--batch", str(args.batch)]  # fmt: skip
            if args.lanes is not None:  # unset: the worker's default (and older workers run)
                command += ["--lanes", str(args.lanes)]
            workers = [
                subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
                for _ in range(args.worker_processes)
            ]
            try:
                with psycopg.connect(conninfo) as conn:
                    time.sleep(3)  # the workers start and LISTEN (a bench, not a test)
                    load = os.getloadavg()[0]
                    watched = [w.pid for w in workers] + [r.pid or 0 for r in receivers]
                    conn.execute(INSERT_LEADS, (args.events,))
                    conn.commit()
                    committed = time.time()
                    cpu_before = [cpu_seconds(pid) for pid in watched]
                    server_before = {pid: cpu_seconds(pid) for pid in server_pids(conn)}
                    deadline = committed + 600
                    while sum(counts[:]) < args.events and time.time() < deadline:
                        time.sleep(0.05)
                    received, ended = sum(counts[:]), max(last[:])
                    cpu = [cpu_seconds(p) - c for p, c in zip(watched, cpu_before, strict=True)]
                    # the server's processes now (those started meanwhile in full; one that
                    # ended meanwhile, an autovacuum worker, is left out)
                    server_cpu = sum(
                        cpu_seconds(pid) - server_before.get(pid, 0.0) for pid in server_pids(conn)
                    )
                    delivered = conn.execute(DELIVERED).fetchone()
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.communicate(timeout=60)
    finally:
        for receiver in receivers:
            receiver.terminate()
            receiver.join()
    seconds = ended - committed
    per = 1000 / max(received, 1)
    w = args.worker_processes
    return {
        "events": args.events, "received": received, "bad_signatures": sum(bad[:]),
        "seconds": seconds, "rate": received / seconds if seconds > 0 else 0.0,
        "delivered_rows": delivered[0] if delivered else 0, "load": load,
        "cpu_worker": sum(cpu[:w]) * per, "cpu_receiver": sum(cpu[w : w + n]) * per,
        "cpu_postgres": server_cpu * per,
    }  # fmt: skip


# --- the outbox's cost ------------------------------------------------------------------


def variant_templates(server: Server, base: str) -> dict[str, str]:
    """Copies of the seeded template: without the event triggers, with a subscription,
    and with a subscription and a worker registered as asleep (so every writing
    transaction sends a NOTIFY, as all did before migration 014)."""
    names = {
        "no outbox": f"{base}_off",
        "outbox": base,
        "outbox + subscription": f"{base}_sub",
        "outbox + subscription, worker asleep": f"{base}_asleep",
    }
    for label, name in names.items():
        if name == base:
            continue
        conninfo = create_database(server, name, base)
        if label == "no outbox":
            downgrade_to(conninfo, BEFORE_OUTBOX)
            continue
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(SUBSCRIBE, ("http://127.0.0.1:9/hook", ["*"], SECRET))
            if label.endswith("asleep"):
                conn.execute(ASLEEP)
    return names


def downgrade_to(conninfo: str, version: int) -> None:
    """The database taken back to ``version`` by the migration engine (its backup
    deleted afterwards), then vacuumed like the seeded template."""
    backups = OUT / "backups" / "bench_events"
    where = target(
        config.resolve({"DATABASE_URL": conninfo, "AICRM_HOME": os.environ["AICRM_HOME"]})
    )
    downgrade(version, Options(backup_dir=backups), where)
    for backup in backups.glob("*.sql"):
        backup.unlink()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def bench_convert(
    server: Server, base: str, ids: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    names = variant_templates(server, base)
    runs: dict[str, list[float]] = {label: [] for label in names}
    cpu: dict[str, list[float]] = {label: [] for label in names}
    loads: list[float] = []
    try:
        for number in range(1, args.rounds + 1):
            for label, template in names.items():
                run = aicrm_conversions(server, template, ids, args, number)
                say(f"convert round {number} {label}: {run.tps:.0f}/s ({run.count:,})")
                runs[label].append(run.tps)
                if run.server_cpu is not None and run.client_cpu is not None:
                    cpu[label].append((run.server_cpu + run.client_cpu) * 1000)
                loads.append(run.load)
    finally:
        for name in names.values():
            if name != base:
                drop_database(server, name)
    return {"runs": runs, "cpu": cpu, "loads": loads}


# --- the report -------------------------------------------------------------------------


def section(
    server: Server, args: argparse.Namespace, deliver: dict[str, Any], convert: dict[str, Any]
) -> str:
    runs = convert["runs"]
    median = {label: statistics.median(values) for label, values in runs.items()}
    base = median["no outbox"]
    cpu = convert.get("cpu") or {}
    cpu_median = {label: statistics.median(v) for label, v in cpu.items() if v}

    def cpu_cells(label: str) -> str:
        if label not in cpu_median or "no outbox" not in cpu_median:
            return "– | –"
        return f"{cpu_median[label]:.3f} ms | {cpu_median['no outbox'] / cpu_median[label]:.3f}×"

    rows = "\n".join(
        f"| {label} | {' / '.join(f'{v:,.0f}' for v in values)} | {median[label]:,.0f} | "
        f"{median[label] / base:.3f}× ({(1 - median[label] / base) * 100:+.1f} % cost) | "
        f"{cpu_cells(label)} |"
        for label, values in runs.items()
    )
    ok_rate = "meets" if deliver["rate"] >= 2000 else "misses"
    worst = min(median["outbox"], median["outbox + subscription"]) / base
    ok_cost = "meets" if worst >= 0.85 else "misses"
    cpu_worst = (
        min(cpu_median["no outbox"] / cpu_median[k] for k in ("outbox", "outbox + subscription"))
        if all(k in cpu_median for k in ("no outbox", "outbox", "outbox + subscription"))
        else None
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    argv = " ".join(sys.argv[1:])
    d = deliver
    loads = convert["loads"]
    parts = [
        f"## {TITLE}",
        f"Command: `python bench/bench_events.py {argv}`.",
        f"{machine(server)} Run {when}; load average (1 min) {min(loads):.2f}–"
        f"{max(loads):.2f} during the conversion rounds, {d['load']:.2f} before the delivery run.",
        f"**Delivery**: {d['events']:,} leads inserted in one transaction (so {d['events']:,} "
        "`lead.created` events) into a database with one subscription to `*`; one `aicrm "
        f"webhooks run --concurrency {args.concurrency} --batch {args.batch}` process(es) "
        f"(× {args.worker_processes}, lanes {args.lanes or 'default'}), already listening, "
        f"POSTing to {args.receivers} asyncio HTTP/1.1 receiver process(es) on loopback that "
        f"check every signature. {d['received']:,} received in {d['seconds']:.2f} s from the "
        f"commit: **{d['rate']:,.0f} events/s** end to end ({d['bad_signatures']} bad "
        f"signatures; {d['delivered_rows']:,} deliveries marked delivered). CPU per event: "
        f"worker {d['cpu_worker']:.3f} ms, receiver {d['cpu_receiver']:.3f} ms, PostgreSQL "
        f"{d['cpu_postgres']:.3f} ms. Target ≥ 2,000/s: {ok_rate} it.",
        f"**The outbox's cost to single conversions**: `conversion.convert_lead` by "
        f"{args.workers} worker threads ({args.processes} process(es)) for {args.duration:.0f} s "
        "per round, each round on a fresh copy of a database seeded with "
        f"{args.convert_leads:,} open leads (bench_crm.py's single-conversion workload), the "
        f"variants alternating, {args.rounds} rounds. Each conversion writes `lead.converted`, "
        "`client.created` and a `contact.updated` per moved contact; with the subscription and "
        "a worker asleep, a NOTIFY (the deliveries are the worker's since migration 015). "
        "*No outbox* is the same seeded database taken back to migration "
        f"{BEFORE_OUTBOX:03d}, before the outbox, by the engine's downgrade.",
        "| variant | conversions/s per round | median | vs no outbox | CPU per conversion, "
        "median (server + client) | CPU: no outbox ÷ this |\n|---|---|---|---|---|---|\n" + rows,
        "Target: the outbox adds ≤ 15 % (≥ 0.85×) with and without subscriptions: "
        f"{ok_cost} it by throughput (worst {worst:.3f}×)"
        + (
            ""
            if cpu_worst is None
            else f"; by CPU per conversion, the steadier measure on a shared machine, worst "
            f"{cpu_worst:.3f}× ({'meets' if cpu_worst >= 0.85 else 'misses'} it)"
        )
        + ". CPU per conversion: every PostgreSQL process's CPU (backends, WAL writer, "
        "checkpointer, reaped ones included, from /proc) over the round, plus the converting "
        "threads' own, divided by the conversions.",
    ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events to deliver")
    parser.add_argument("--concurrency", type=int, default=16, help="worker's requests at once")
    parser.add_argument("--batch", type=int, default=500, help="worker's deliveries per batch")
    parser.add_argument(
        "--worker-processes", type=int, default=1, help="aicrm webhooks run processes"
    )
    parser.add_argument("--receivers", type=int, default=2, help="receiver processes")
    parser.add_argument("--lanes", type=int, help="each worker's claim loops (its default)")
    parser.add_argument("--workers", type=int, default=4, help="converting threads")
    parser.add_argument("--processes", type=int, default=2, help="processes for those threads")
    parser.add_argument("--duration", type=float, default=15, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each variant")
    parser.add_argument("--convert-leads", type=int, default=40_000, help="leads seeded")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    parser.add_argument("--skip-convert", action="store_true", help="delivery only")
    args = parser.parse_args(argv)
    server = find_server()
    say(f"server: PostgreSQL {server.major} ({server.source})")
    base = "bench_crm_tpl_events"
    say(f"seeding {args.convert_leads:,} leads")
    ids = seeded_template(server, base, args.convert_leads)
    try:
        deliver = bench_deliver(server, base, args)
        say(
            f"delivery: {deliver['rate']:,.0f} events/s ({deliver['received']:,}); CPU ms per "
            f"event: worker {deliver['cpu_worker']:.3f}, receiver {deliver['cpu_receiver']:.3f}, "
            f"PostgreSQL {deliver['cpu_postgres']:.3f}; load {deliver['load']:.2f}"
        )
        convert = (
            {"runs": {"no outbox": [1.0], "outbox": [1.0], "outbox + subscription": [1.0]},
             "loads": [0.0]}
            if args.skip_convert else bench_convert(server, base, ids, args)
        )  # fmt: skip
    finally:
        drop_database(server, base)
    text = section(server, args, deliver, convert)
    print(text)
    if not args.no_write and not args.skip_convert:
        write_section(args.results, TITLE, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
