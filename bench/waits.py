"""What the workload waits on while a migration runs, sampled from the server.

A thread samples, every ``interval`` seconds on its own connection:

* every workload backend that is waiting (``pg_stat_activity.wait_event_type`` /
  ``wait_event``), the lock it waits for (``pg_locks`` not granted: mode and
  relation) and who blocks it (``pg_blocking_pids``: their program and statement);
* every relation lock the migration's own sessions hold on the CRM's tables, in
  every mode (not only ACCESS EXCLUSIVE), with the statement holding it;
* what the migration's own sessions (aicrm, pg_dump, psql) are doing: their wait
  event or "on CPU", and the start of their statement;
* the machine's runnable processes (``procs_running`` of /proc/stat: above the
  number of cores, something waits for a CPU, which no wait event shows) and the
  page cache's dirty and under-writeback data (/proc/meminfo: a large writeback is
  what makes the server's WAL fsyncs, and so every commit, wait).

Every sample is also kept with its time, so :meth:`WaitWatch.during` can say what
was going on while a given slow operation ran.

Time per kind = samples × interval (an estimate: a wait shorter than the interval
may be missed). Used by bench/bench_online.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

WAITERS = """
SELECT a.wait_event_type || ':' || a.wait_event,
       coalesce((SELECT string_agg(DISTINCT l.mode || ' on ' ||
                                   coalesce(l.relation::regclass::text, l.locktype), ', ')
                 FROM pg_locks AS l WHERE l.pid = a.pid AND NOT l.granted), ''),
       coalesce((SELECT string_agg(DISTINCT coalesce(nullif(b.application_name, ''), 'workload')
                                   || ': ' || left(regexp_replace(b.query, '\\s+', ' ', 'g'), 70),
                                   ' | ')
                 FROM pg_stat_activity AS b WHERE b.pid = ANY (pg_blocking_pids(a.pid))), '')
FROM pg_stat_activity AS a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend' AND a.state = 'active'
  AND a.application_name = '' AND a.wait_event_type IS NOT NULL
  AND a.wait_event_type NOT IN ('Client', 'Activity')
"""
HELD = """
SELECT l.mode || ' on ' || l.relation::regclass::text || CASE WHEN l.granted THEN '' ELSE
       ' (waiting)' END, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 70)
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND a.datname = current_database()
  AND (a.application_name LIKE 'aicrm%%' OR a.application_name IN ('pg_dump', 'psql'))
  AND l.relation IN ('leads'::regclass, 'clients'::regclass, 'contacts'::regclass)
"""
MIGRATION = """
SELECT coalesce(nullif(a.application_name, ''), 'client') || ' '
       || coalesce(a.wait_event_type || ':' || a.wait_event, 'on CPU') || ': '
       || left(regexp_replace(a.query, '\\s+', ' ', 'g'), 60)
FROM pg_stat_activity AS a
WHERE a.datname = current_database() AND a.state = 'active' AND a.pid <> pg_backend_pid()
  AND (a.application_name LIKE 'aicrm%%' OR a.application_name IN ('pg_dump', 'psql'))
"""


def procs_running() -> int:
    """Processes running or runnable on the machine right now (0 where unknown)."""
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def dirty_mb() -> int:
    """The page cache's Dirty plus Writeback, in MB (0 where unknown)."""
    total = 0
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith(("Dirty:", "Writeback:")):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total // 1024


@dataclass
class WaitWatch:
    conninfo: str
    interval: float = 0.01
    polls: int = 0
    waits: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    held: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_seen: dict[tuple[str, str, str], float] = field(default_factory=dict)
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    # (monotonic time, workload waits, migration activities, runnable processes,
    # dirty + writeback MB)
    timeline: list[tuple[float, list[str], list[str], int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> WaitWatch:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="wait-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                conn.execute("SET application_name = 'bench wait watch'")
                while not self._stop.is_set():
                    at = time.monotonic()
                    now = at - self.started
                    waiting: list[str] = []
                    for kind in conn.execute(WAITERS, prepare=True).fetchall():
                        key = (str(kind[0]), str(kind[1]), str(kind[2]))
                        self.waits[key] += 1
                        self.first_seen.setdefault(key, now)
                        waiting.append(key[0])
                    for lock in conn.execute(HELD, prepare=True).fetchall():
                        self.held[(str(lock[0]), str(lock[1]))] += 1
                    doing = [str(r[0]) for r in conn.execute(MIGRATION, prepare=True)]
                    self.timeline.append((at, waiting, doing, procs_running(), dirty_mb()))
                    self.polls += 1
                    self._stop.wait(self.interval)
        except psycopg.Error as exc:
            self.error = str(exc).splitlines()[0]

    def during(self, start: float, end: float, top: int = 3) -> str:
        """What was sampled between the monotonic times ``start`` and ``end``: the
        workload's waits, the migration's sessions' activities (samples each), and
        the most processes seen runnable at once and the most dirty page cache."""
        inside = [t for t in self.timeline if start <= t[0] <= end]
        if not inside:
            return "no samples"
        waits = Counter(w for t in inside for w in t[1])
        doing = Counter(d for t in inside for d in t[2])
        runnable = max(t[3] for t in inside)
        dirty = max(t[4] for t in inside)
        parts = [
            f"{len(inside)} samples, up to {runnable} processes runnable, "
            f"up to {dirty} MB dirty or under writeback"
        ]
        if waits:
            common = waits.most_common(top)
            parts.append("workload waited on " + ", ".join(f"{w} ×{n}" for w, n in common))
        if doing:
            busy = doing.most_common(top)
            parts.append("migration: " + " | ".join(f"{d} ×{n}" for d, n in busy))
        return "; ".join(parts)

    def summary(self, top: int = 6) -> dict[str, list[tuple[str, float, float]]]:
        """The commonest waits (what, estimated seconds of backend waiting, first
        seen at) and the migration's held locks (what, estimated seconds held)."""
        per = self.interval
        waits = [
            (
                f"{kind[0]}"
                + (f" for {kind[1]}" if kind[1] else "")
                + (f", blocked by {kind[2]}" if kind[2] else ""),
                n * per,
                self.first_seen[kind],
            )
            for kind, n in self.waits.most_common(top)
        ]
        merged: Counter[str] = Counter()
        for (mode, _), n in self.held.items():
            merged[mode] += n
        held = [(mode, n * per, 0.0) for mode, n in merged.most_common(top)]
        return {"waits": waits, "held": held}
