"""What the workload waits on while a migration runs, sampled from the server.

A thread samples, every ``interval`` seconds on its own connection:

* every workload backend that is waiting (``pg_stat_activity.wait_event_type`` /
  ``wait_event``), the lock it waits for (``pg_locks`` not granted: mode and
  relation) and who blocks it (``pg_blocking_pids``: their program and statement);
* every relation lock the migration's own sessions hold on the CRM's tables, in
  every mode (not only ACCESS EXCLUSIVE), with the statement holding it.

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
                    now = time.monotonic() - self.started
                    for kind in conn.execute(WAITERS, prepare=True).fetchall():
                        key = (str(kind[0]), str(kind[1]), str(kind[2]))
                        self.waits[key] += 1
                        self.first_seen.setdefault(key, now)
                    for lock in conn.execute(HELD, prepare=True).fetchall():
                        self.held[(str(lock[0]), str(lock[1]))] += 1
                    self.polls += 1
                    self._stop.wait(self.interval)
        except psycopg.Error as exc:
            self.error = str(exc).splitlines()[0]

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
