"""The delivery worker (``aicrm webhooks run``): pending deliveries to their URLs.

One loop: claim a batch of due deliveries (``FOR UPDATE SKIP LOCKED``, so several
workers share the work), POST them concurrently, record each outcome and commit;
then wait for ``NOTIFY aicrm_events`` (sent by the fan-out trigger) or the next retry
or the poll interval, whichever comes first (polling is the fallback, e.g. behind a
transaction pooler, where LISTEN does not work).

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
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from aicrm import __version__
from aicrm.db import Connection, Target, connect
from aicrm.events import signing
from aicrm.events.client import DeliveryFailed, Poster

CHANNEL = "aicrm_events"
LISTEN = "LISTEN aicrm_events"

# The due deliveries first (locked, skipping those another worker holds), then their
# bodies, built for the claimed rows only. A delivery waits while an earlier event of
# the same record is pending for the same subscription. {window}: CLAIM looks at the
# first due deliveries only (a bounded amount of work per batch, however long the
# backlog); CLAIM_ALL at all of them, when those are all waiting.
CLAIM_TEMPLATE = """
WITH due AS MATERIALIZED (
    SELECT d.subscription_id, d.event_id, d.record_id
    FROM webhook_deliveries d
    WHERE d.state = 'pending' AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at, d.event_id
    {window}
), claimed AS (
    SELECT d.subscription_id, d.event_id, d.attempts
    FROM due u
    JOIN webhook_deliveries d ON d.subscription_id = u.subscription_id AND d.event_id = u.event_id
    WHERE d.state = 'pending'
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries p
          WHERE p.subscription_id = u.subscription_id AND p.record_id = u.record_id
            AND p.state = 'pending' AND p.event_id < u.event_id)
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
CLAIM = sql.SQL(CLAIM_TEMPLATE).format(window=sql.SQL("LIMIT %(window)s"))
CLAIM_ALL = sql.SQL(CLAIM_TEMPLATE).format(window=sql.SQL(""))
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
    it (jitter); ``poll``: the longest wait without a notification."""

    batch: int = 200
    concurrency: int = 8
    max_attempts: int = 8
    backoff: float = 2.0
    backoff_max: float = 3600.0
    poll: float = 2.0
    timeout: float = 10.0

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

    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> None:
        """Deliver until ``stop`` is set (or, ``once``, until nothing is due)."""
        stop = stop or threading.Event()
        try:
            with (
                connect(self.where, application_name="aicrm webhooks") as conn,
                ThreadPoolExecutor(self.settings.concurrency, "aicrm-webhook") as pool,
            ):
                listener = None if once else self._listen()
                try:
                    while not stop.is_set():
                        claimed = self.run_batch(conn, pool)
                        if claimed == self.settings.batch:
                            continue
                        if once and claimed == 0:
                            return
                        if not once:
                            self._wait(conn, listener, claimed)
                finally:
                    if listener is not None:
                        listener.close()
        finally:
            self.poster.close()

    def run_batch(self, conn: Connection, pool: ThreadPoolExecutor | None = None) -> int:
        """Claim, deliver and record one batch in one transaction; returns its size."""
        with conn.transaction():
            size = {"batch": self.settings.batch, "window": 4 * self.settings.batch}
            rows = conn.execute(CLAIM, size).fetchall() or conn.execute(CLAIM_ALL, size).fetchall()
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
            self.delivered += len(good)
        if not bad:
            return
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

    def _wait(self, conn: Connection, listener: Connection | None, claimed: int) -> None:
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
        if listener is None:
            time.sleep(wait)
            return
        for _ in listener.notifies(timeout=wait, stop_after=1):
            pass


__all__ = ["CHANNEL", "Outcome", "Settings", "Worker"]
