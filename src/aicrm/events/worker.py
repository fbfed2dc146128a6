"""The delivery worker (``aicrm webhooks run``): pending deliveries to their URLs.

One loop per lane: fan out the events committed since the last pass into deliveries
(:mod:`~aicrm.events._fanout`, one lane at a time), claim a batch of due deliveries
(``FOR UPDATE SKIP LOCKED``, so several lanes and workers share the work), POST them
concurrently, record each outcome and commit; then wait for ``NOTIFY aicrm_events``
(sent by the event trigger when a lane sleeps) or the next retry or the poll interval,
whichever comes first (polling is the fallback, e.g. behind a transaction pooler,
where LISTEN does not work). A worker runs ``lanes``
loops (two by default), each on a connection of its own: while one lane's POSTs are
out, another claims or records in the database, so neither the database nor the
receivers wait for the other.

Guarantees (docs/events-and-webhooks.md):

* at least once: a delivery is marked delivered in the transaction that claimed it,
  after the receiver's 2xx; a worker killed before that commit leaves it pending, and
  it is sent again, with the same event id;
* in order per record: a delivery is claimed only when no earlier event of the same
  record is pending for the same subscription (delivered or dead first);
* retries with exponential backoff and jitter; dead after ``max_attempts`` failures.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aicrm import __version__
from aicrm.db import Connection, Target, connect
from aicrm.db.errors import translated
from aicrm.errors import AicrmError
from aicrm.events import _signing as signing
from aicrm.events._client import DeliveryFailed, Poster
from aicrm.events._fanout import fan_out

CHANNEL = "aicrm_events"
STOP_CHECK = 0.2  # seconds: the longest a waiting lane takes to see a stop
SETTLE = 0.1  # seconds: a lane's first wait after it registered as asleep
LISTEN = "LISTEN aicrm_events"

# The due deliveries in order, locked (skipping those another worker holds), then their
# bodies, built for the claimed rows only. A delivery waits while an earlier event of
# the same record is pending for the same subscription. The plan matters: a walk of
# the due index in order, each row's earlier-event test an index probe
# (webhook_deliveries_record_idx), stopped at the batch's size. An earlier form that
# first took a window of due rows and joined them back hash-joined every pending row
# twice per batch: its cost grew with the backlog.
CLAIM = """
WITH claimed AS (
    SELECT d.subscription_id, d.event_id, d.attempts
    FROM webhook_deliveries d
    WHERE d.state = 'pending' AND d.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries p
          WHERE p.subscription_id = d.subscription_id AND p.record_id = d.record_id
            AND p.state = 'pending' AND p.event_id < d.event_id)
    ORDER BY d.next_attempt_at, d.event_id
    LIMIT %(batch)s
    FOR UPDATE OF d SKIP LOCKED
)
SELECT c.subscription_id, c.event_id, c.attempts, s.url, s.secret, e.event_id::text, e.type,
       json_build_object('id', e.event_id, 'sequence', e.id, 'type', e.type,
                         'occurred_at', e.occurred_at, 'actor', e.actor,
                         'record', json_build_object('kind', e.record_kind, 'id', e.record_id),
                         'data', e.payload)::text
FROM claimed c
JOIN webhook_subscriptions s ON s.id = c.subscription_id
JOIN crm_events e ON e.id = c.event_id
ORDER BY c.event_id
"""
DELIVERED = """
UPDATE webhook_deliveries d
SET state = 'delivered', attempts = d.attempts + 1, delivered_at = now(), last_error = NULL,
    updated_at = now()
FROM unnest(%s::bigint[], %s::bigint[]) AS f (subscription_id, event_id)
WHERE d.subscription_id = f.subscription_id AND d.event_id = f.event_id
"""
FAILED = """
UPDATE webhook_deliveries d
SET state = CASE WHEN f.dead THEN 'dead' ELSE 'pending' END, attempts = d.attempts + 1,
    next_attempt_at = now() + make_interval(secs => f.delay), last_error = f.error,
    updated_at = now()
FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::boolean[], %s::text[])
     AS f (subscription_id, event_id, delay, dead, error)
WHERE d.subscription_id = f.subscription_id AND d.event_id = f.event_id
"""
# The worker's last lane to fall asleep registers its LISTEN session (migration 014):
# the fan-out notifies only when one is registered. Rows of sessions that no longer exist (a lane
# killed while asleep) are deleted on the way: until then, writers notify in vain.
SLEEP = """
WITH gone AS (
    DELETE FROM webhook_sleepers s
    WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = s.pid)
)
INSERT INTO webhook_sleepers (pid) VALUES (pg_backend_pid()) ON CONFLICT (pid) DO NOTHING
"""
WAKE = "DELETE FROM webhook_sleepers WHERE pid = %s"
# Seconds until the next delivery that is not waiting for an earlier one is due.
NEXT_DUE = """
SELECT extract(epoch FROM min(d.next_attempt_at) - now())::float8
FROM webhook_deliveries d
WHERE d.state = 'pending'
  AND NOT EXISTS (
      SELECT 1 FROM webhook_deliveries p
      WHERE p.subscription_id = d.subscription_id AND p.record_id = d.record_id
        AND p.state = 'pending' AND p.event_id < d.event_id)
"""


@dataclass(frozen=True)
class Settings:
    """How the worker delivers. ``backoff``: seconds before the first retry, doubled
    after each failure up to ``backoff_max``, each delay drawn between half and all of
    it (jitter); ``poll``: the longest wait without a notification; ``lanes``: claim
    loops at once, each on a connection of its own (``concurrency`` is shared)."""

    batch: int = 200
    concurrency: int = 8
    max_attempts: int = 8
    backoff: float = 2.0
    backoff_max: float = 3600.0
    poll: float = 2.0
    timeout: float = 10.0
    lanes: int = 2

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failure, with jitter."""
        full = min(self.backoff_max, self.backoff * 2 ** max(0, attempts - 1))
        return float(full / 2 + random.uniform(0, full / 2))


@dataclass(frozen=True)
class Outcome:
    """One attempt: ``error`` is None when the receiver answered 2xx."""

    subscription_id: int
    event_id: int
    attempts: int
    event: str
    error: str | None


Log = Callable[[str], None]


class Worker:
    """Delivers pending webhooks from the database at ``where`` (see the module doc)."""

    def __init__(self, where: Target, settings: Settings | None = None, log: Log | None = None):
        self.where = where
        self.settings = settings or Settings()
        self.log = log or (lambda _line: None)
        self.poster = Poster(self.settings.timeout)
        self.delivered = 0
        self.failed = 0
        self._counting = threading.Lock()  # the lanes' threads add to the counts
        self._sleeping = threading.Lock()  # guards the three below
        self._awake = 0  # lanes not asleep
        self._registered: int | None = None  # the session registered as asleep
        self._left = False

    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> None:
        """Deliver until ``stop`` is set (or, ``once``, until nothing is due). The first
        lane runs on this thread (so Ctrl-C reaches it at once), the others on threads
        of their own; an error in any lane stops the others and is raised here."""
        stop = stop or threading.Event()
        halt = threading.Event()  # a lane failed: the others stop too
        extra = max(1, self.settings.lanes) - 1
        self._awake, self._registered, self._left = extra + 1, None, False
        try:
            with (
                ThreadPoolExecutor(self.settings.concurrency, "aicrm-webhook") as pool,
                ThreadPoolExecutor(max(1, extra), "aicrm-webhook-lane") as lanes,
            ):
                others = [lanes.submit(self._lane, stop, halt, pool, once) for _ in range(extra)]
                self._lane(stop, halt, pool, once)
                for other in others:
                    other.result()
        finally:
            self.poster.close()

    def _lane(
        self, stop: threading.Event, halt: threading.Event, pool: ThreadPoolExecutor, once: bool
    ) -> None:
        def stopping() -> bool:
            return stop.is_set() or halt.is_set()

        try:
            with connect(self.where, application_name="aicrm webhooks") as conn:
                listener = None if once else self._listen()
                asleep = False
                try:
                    while not stopping():
                        claimed = self.run_batch(conn, pool)
                        if claimed and asleep and listener is not None:
                            self._wake_up(listener)
                            asleep = False
                        if claimed == self.settings.batch:
                            continue
                        if once and claimed == 0:
                            return
                        if once:
                            continue
                        settle = False
                        if not claimed and listener is not None and not asleep:
                            asleep = True
                            settle = self._fall_asleep(listener)
                        self._wait(conn, listener, claimed, stopping, settle)
                finally:
                    if listener is not None:
                        # a lost session: its row is stale (the next sleeper clears it)
                        with suppress(AicrmError), translated():
                            self._leave(listener)
                        listener.close()
        except BaseException:
            halt.set()
            raise

    # While any lane is awake it claims again without being told, so writers need not
    # notify: only the last lane of the worker to fall asleep registers (migration 014),
    # and the first to wake with work deletes the worker's row.
    def _fall_asleep(self, listener: Connection) -> bool:
        """This lane found nothing to do; True if it registered the worker as asleep."""
        with self._sleeping:
            self._awake -= 1
            if self._awake > 0 or self._left:
                return False
            listener.execute(SLEEP)
            self._registered = listener.info.backend_pid
            return True

    def _wake_up(self, listener: Connection) -> None:
        with self._sleeping:
            if self._registered is not None:
                listener.execute(WAKE, (self._registered,))
                self._registered = None
            self._awake += 1

    def _leave(self, listener: Connection) -> None:
        with self._sleeping:
            self._left = True  # the lanes are stopping: none registers again
            if self._registered is not None:
                listener.execute(WAKE, (self._registered,))
                self._registered = None

    def run_batch(self, conn: Connection, pool: ThreadPoolExecutor | None = None) -> int:
        """Fan out what was committed since (a short transaction of its own, so the
        fan-out's lock is not held while the batch's POSTs are out), then claim, deliver
        and record one batch in one transaction; returns its size."""
        fan_out(conn)
        with conn.transaction():
            rows = conn.execute(CLAIM, {"batch": self.settings.batch}).fetchall()
            if not rows:
                return 0
            if pool is None or len(rows) == 1:
                outcomes = [self._deliver(row) for row in rows]
            else:
                outcomes = list(pool.map(self._deliver, rows))
            self._record(conn, outcomes)
        return len(rows)

    def _deliver(self, row: tuple[Any, ...]) -> Outcome:
        subscription_id, event_number, attempts, url, secret, event_id, kind, body = row
        data = body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"aicrm-webhooks/{__version__}",
            "Aicrm-Event-Id": event_id,
            "Aicrm-Event-Type": kind,
            "Aicrm-Delivery-Attempt": str(attempts + 1),
            signing.HEADER: signing.sign(secret, data),
        }
        try:
            self.poster.post(url, data, headers)
        except DeliveryFailed as exc:
            return Outcome(subscription_id, event_number, attempts + 1, event_id, str(exc))
        return Outcome(subscription_id, event_number, attempts + 1, event_id, None)

    def _record(self, conn: Connection, outcomes: list[Outcome]) -> None:
        good = [o for o in outcomes if o.error is None]
        bad = [o for o in outcomes if o.error is not None]
        if good:
            conn.execute(
                DELIVERED,
                ([o.subscription_id for o in good], [o.event_id for o in good]),
            )
            with self._counting:
                self.delivered += len(good)
        if not bad:
            return
        with self._counting:
            self.failed += len(bad)
        limit = self.settings.max_attempts
        delays = [self.settings.delay(o.attempts) for o in bad]
        dead = [o.attempts >= limit for o in bad]
        conn.execute(
            FAILED,
            (
                [o.subscription_id for o in bad],
                [o.event_id for o in bad],
                delays,
                dead,
                [o.error for o in bad],
            ),
        )
        for outcome, wait, gone in zip(bad, delays, dead, strict=True):
            then = (
                "dead (replay it with 'aicrm webhooks replay')"
                if gone
                else f"retry in {wait:.1f} s"
            )
            self.log(
                f"event {outcome.event} to subscription {outcome.subscription_id}: "
                f"{outcome.error} (attempt {outcome.attempts} of {limit}); {then}"
            )

    def _listen(self) -> Connection | None:
        if self.where.pooled:
            return None  # LISTEN needs a session of its own: poll instead
        listener = connect(self.where, autocommit=True, application_name="aicrm webhooks listen")
        listener.execute(LISTEN)
        return listener

    def _wait(
        self,
        conn: Connection,
        listener: Connection | None,
        claimed: int,
        stopping: Callable[[], bool],
        settle: bool = False,
    ) -> None:
        if claimed:
            return  # the batch was not full: look again at once for what became due
        with conn.transaction():
            row = conn.execute(NEXT_DUE).fetchone()
        due = row[0] if row else None
        if due is None:
            wait = self.settings.poll
        elif due <= 0:
            wait = min(self.settings.poll, 0.05)  # held by another worker: look again soon
        else:
            wait = min(self.settings.poll, due)
        if settle:
            # Just registered as asleep: a writer that looked before that may commit
            # without a NOTIFY. A short first wait, then a claim, catches it.
            wait = min(wait, SETTLE)
        # In slices, so that a stop (or another lane's failure) is seen within one.
        until = time.monotonic() + wait
        while (left := until - time.monotonic()) > 0 and not stopping():
            if listener is None:
                time.sleep(min(left, STOP_CHECK))
            elif any(True for _ in listener.notifies(timeout=min(left, STOP_CHECK), stop_after=1)):
                return


__all__ = ["CHANNEL", "Outcome", "Settings", "Worker"]
