"""The CRM's traffic, played while a migration runs: bench/bench_online.py uses it.

    with Workload(conninfo, threads=4, rate=25) as load:
        ... run a migration ...
    result = load.result()           # every operation's latency, errors
    check = load.verify()            # every write it made: present and consistent

Each thread has its own connection (autocommit: one transaction per operation) and
plays, at ``rate`` operations per second, a mix of: reads of a lead and of a client
(by id, from a sample taken at the start), inserts of leads and of contacts,
updates of leads, and conversions of its own new leads. Every operation names its
columns (never ``*``), so its statements are valid on both sides of 001.

Conversions go through ``bench_convert_lead(lead, client, name)``, a function the
harness installs (the application's conversion, written to work on both sides of
the switch): it locks the lead's row first, which an ACCESS EXCLUSIVE lock on leads
excludes, then reads the catalog: with ``leads.client_id`` (legacy) it records the
conversion on both legacy sides, else it sets the new fields. So the schema cannot
change between its check and its writes.

Afterwards :meth:`Workload.verify` reads the database on whichever side it ended
and counts writes lost (a row it inserted is missing) or wrong (a value differs
from the last one it wrote, or a conversion is not expressed by the schema the
database is at).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

CONVERT = """
CREATE OR REPLACE FUNCTION bench_convert_lead(p_lead uuid, p_client uuid, p_name text)
RETURNS void LANGUAGE plpgsql AS $$
-- The legacy columns' names are put together, not written out: the engine's search
-- for functions using the columns 001 drops (aicrm.migrate._dependents, a textual
-- search) would otherwise refuse the migration, and this function is written to
-- work on both sides of the switch (it reads the catalog first).
DECLARE
    legacy_lead_link text := 'client' || '_id';
    legacy_client_link text := 'converted_from_lead' || '_id';
BEGIN
    -- The row lock excludes an ACCESS EXCLUSIVE lock on leads (the switch of 001)
    -- until commit, so the schema read next is the one the writes below meet.
    PERFORM 1 FROM leads WHERE id = p_lead FOR NO KEY UPDATE;
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'leads'::regclass
               AND attname = legacy_lead_link AND NOT attisdropped) THEN
        EXECUTE format('INSERT INTO clients (id, name, %I) VALUES ($1, $2, $3)',
                       legacy_client_link)
            USING p_client, p_name, p_lead;
        EXECUTE format('UPDATE leads SET %I = $1 WHERE id = $2', legacy_lead_link)
            USING p_client, p_lead;
    ELSE
        EXECUTE 'INSERT INTO clients (id, name) VALUES ($1, $2)' USING p_client, p_name;
        EXECUTE 'UPDATE leads SET converted_to_client_id = $1, conversion_date = now(), '
                'is_converted = true WHERE id = $2' USING p_client, p_lead;
    END IF;
END
$$;
"""

MIX = (
    ("read_lead", 30),
    ("read_client", 20),
    ("insert_lead", 15),
    ("insert_contact", 10),
    ("update_lead", 15),
    ("convert", 10),
)


@dataclass
class Op:
    kind: str
    started: float  # monotonic
    seconds: float  # its own time, waits included
    error: str | None = None
    late: float = 0.0  # how long after its intended start it started (the thread was stuck)

    @property
    def intended(self) -> float:
        """Its time from its intended start: counts the operations a stuck thread
        could not even begin (no coordinated omission)."""
        return self.late + self.seconds


@dataclass
class Written:
    """What one thread wrote, to check afterwards."""

    leads: dict[str, str] = field(default_factory=dict)  # id -> last status written
    contacts: dict[str, str] = field(default_factory=dict)  # id -> lead id
    conversions: dict[str, str] = field(default_factory=dict)  # lead id -> client id
    updated: dict[str, int] = field(default_factory=dict)  # sample lead id -> last counter


@dataclass
class Result:
    ops: list[Op]
    seconds: float

    def latencies(self, kind: str | None = None) -> list[float]:
        return [o.seconds for o in self.ops if kind is None or o.kind == kind]

    def summary(self) -> dict[str, Any]:
        times = sorted(self.latencies())
        intended = sorted(o.intended for o in self.ops)
        errors = [o for o in self.ops if o.error]
        return {
            "p99_intended_ms": 1000 * _quantile(intended, 0.99),
            "max_intended_ms": 1000 * intended[-1] if intended else 0.0,
            "operations": len(self.ops),
            "errors": len(errors),
            "error_samples": sorted({o.error for o in errors if o.error})[:5],
            "max_ms": 1000 * times[-1] if times else 0.0,
            "slowest_at": sorted(((o.seconds, o.started, o.kind) for o in self.ops), reverse=True)[
                :5
            ],
            "p99_ms": 1000 * _quantile(times, 0.99),
            "p50_ms": 1000 * _quantile(times, 0.50),
            "slowest": sorted(((1000 * o.seconds, o.kind) for o in self.ops), reverse=True)[:5],
            "over_200ms": sum(1 for t in times if t > 0.2),
            "rate": len(self.ops) / self.seconds if self.seconds else 0.0,
        }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


class Workload:
    """``threads`` connections, each playing ``rate`` operations per second."""

    def __init__(self, conninfo: str, threads: int = 4, rate: float = 25.0, seed: int = 1) -> None:
        self.conninfo = conninfo
        self.threads = threads
        self.rate = rate
        self.seed = seed
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._ops: list[list[Op]] = [[] for _ in range(threads)]
        self._written = [Written() for _ in range(threads)]
        self._failures: list[str] = []
        self._started = 0.0
        self._stopped = 0.0
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(CONVERT)
            self.lead_sample = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM leads ORDER BY md5(id::text || %s) LIMIT 4000", (str(seed),)
                ).fetchall()
            ]
            self.client_sample = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM clients ORDER BY md5(id::text || %s) LIMIT 2000", (str(seed),)
                ).fetchall()
            ]
        if not self.lead_sample or not self.client_sample:
            raise RuntimeError("the workload needs a database with leads and clients")

    def __enter__(self) -> Workload:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        for n in range(self.threads):
            worker = threading.Thread(
                target=self._run, args=(n,), name=f"workload-{n}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join()
        self._stopped = time.monotonic()
        if self._failures:
            raise RuntimeError("workload thread failed: " + "; ".join(self._failures))

    def result(self) -> Result:
        ops = sorted((op for ops in self._ops for op in ops), key=lambda o: o.started)
        return Result(ops, self._stopped - self._started)

    # -- one thread

    def _run(self, n: int) -> None:
        try:
            self._play(n)
        except Exception as exc:  # reported by stop()
            self._failures.append(f"{type(exc).__name__}: {exc}")

    def _play(self, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        kinds = [kind for kind, weight in MIX for _ in range(weight)]
        mine = self.lead_sample[n :: self.threads]  # sample leads only this thread updates
        written, ops = self._written[n], self._ops[n]
        counter = 0
        fresh: list[str] = []  # this thread's new leads not converted yet
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        with psycopg.connect(self.conninfo, autocommit=True, prepare_threshold=None) as conn:
            while not self._stop.is_set():
                kind = rng.choice(kinds)
                started = time.monotonic()
                late = max(0.0, started - next_at)
                error = None
                try:
                    counter += 1
                    self._one(conn, kind, rng, written, mine, fresh, counter)
                except psycopg.Error as exc:
                    error = (exc.diag.message_primary or str(exc)).splitlines()[0][:120]
                    if conn.broken:
                        raise
                ops.append(Op(kind, started, time.monotonic() - started, error, late))
                # A fixed schedule: after a stall the thread catches up back to back,
                # and each operation's ``late`` says how long it was held up.
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def _one(
        self,
        conn: psycopg.Connection[Any],
        kind: str,
        rng: random.Random,
        written: Written,
        mine: list[str],
        fresh: list[str],
        counter: int,
    ) -> None:
        if kind == "read_lead":
            conn.execute(
                "SELECT id, email, status, source, created_at FROM leads WHERE id = %s",
                (rng.choice(self.lead_sample),),
            ).fetchall()
        elif kind == "read_client":
            conn.execute(
                "SELECT id, name, industry, created_at FROM clients WHERE id = %s",
                (rng.choice(self.client_sample),),
            ).fetchall()
        elif kind == "insert_lead":
            lead = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO leads (id, email, source, status) VALUES (%s, %s, 'workload', 'new')",
                (lead, f"w-{lead[:12]}@example.org"),
            )
            written.leads[lead] = "new"
            fresh.append(lead)
        elif kind == "insert_contact":
            contact = str(uuid.uuid4())
            lead = rng.choice(list(written.leads) or self.lead_sample)
            conn.execute(
                "INSERT INTO contacts (id, lead_id, email) VALUES (%s, %s, %s)",
                (contact, lead, f"k-{contact[:12]}@example.org"),
            )
            written.contacts[contact] = lead
        elif kind == "update_lead":
            lead = rng.choice(mine)
            conn.execute(
                "UPDATE leads SET attributes = attributes || jsonb_build_object('workload', %s) "
                "WHERE id = %s",
                (counter, lead),
            )
            written.updated[lead] = counter
        elif kind == "convert":
            if not fresh:
                return
            lead = fresh.pop(rng.randrange(len(fresh)))
            client = str(uuid.uuid4())
            conn.execute(
                "SELECT bench_convert_lead(%s, %s, %s)", (lead, client, f"from {lead[:8]}")
            )
            written.conversions[lead] = client

    # -- afterwards

    def verify(self) -> dict[str, int]:
        """Count the writes lost or wrong, on whichever side the database ended."""
        leads: dict[str, str] = {}
        contacts: dict[str, str] = {}
        conversions: dict[str, str] = {}
        updated: dict[str, int] = {}
        for w in self._written:
            leads.update(w.leads)
            contacts.update(w.contacts)
            conversions.update(w.conversions)
            updated.update(w.updated)
        lost = wrong = 0
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            new_schema = bool(
                conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'leads'::regclass "
                    "AND attname = 'converted_to_client_id' AND NOT attisdropped) AND NOT EXISTS "
                    "(SELECT 1 FROM pg_attribute WHERE attrelid = 'leads'::regclass "
                    "AND attname = 'client_id' AND NOT attisdropped)"
                ).fetchone()[0]  # type: ignore[index]
            )
            found = {
                str(r[0]): str(r[1])
                for r in conn.execute(
                    "SELECT id, status FROM leads WHERE id = ANY(%s::uuid[])", (list(leads),)
                ).fetchall()
            }
            lost += len(leads) - len(found)
            wrong += sum(1 for lead, status in found.items() if leads[lead] != status)
            got = {
                str(r[0]): str(r[1])
                for r in conn.execute(
                    "SELECT id, lead_id FROM contacts WHERE id = ANY(%s::uuid[])", (list(contacts),)
                ).fetchall()
            }
            lost += len(contacts) - len(got)
            wrong += sum(1 for k, lead in got.items() if contacts[k] != lead)
            values = {
                str(r[0]): r[1]
                for r in conn.execute(
                    "SELECT id, (attributes->>'workload')::int FROM leads "
                    "WHERE id = ANY(%s::uuid[])",
                    (list(updated),),
                ).fetchall()
            }
            wrong += sum(1 for lead, n in updated.items() if values.get(lead) != n)
            if new_schema:
                query = (
                    "SELECT l.id, l.converted_to_client_id, l.is_converted AND "
                    "l.conversion_date IS NOT NULL AND c.id IS NOT NULL "
                    "FROM leads l LEFT JOIN clients c ON c.id = l.converted_to_client_id "
                    "WHERE l.id = ANY(%s::uuid[])"
                )
            else:
                query = (
                    "SELECT l.id, l.client_id, c.converted_from_lead_id = l.id "
                    "FROM leads l LEFT JOIN clients c ON c.id = l.client_id "
                    "WHERE l.id = ANY(%s::uuid[])"
                )
            converted = {
                str(r[0]): (str(r[1]), bool(r[2]))
                for r in conn.execute(query, (list(conversions),)).fetchall()
            }
            lost += len(conversions) - len(converted)
            wrong += sum(
                1
                for lead, (client, ok) in converted.items()
                if client != conversions[lead] or not ok
            )
        return {
            "writes": len(leads) + len(contacts) + len(updated) + len(conversions),
            "lost": lost,
            "wrong": wrong,
            "conversions": len(conversions),
            "new_schema": int(new_schema),
        }
