"""Where read-only work goes: the read replica while it is close enough, else the primary.

A replica (``AICRM_READ_URL``) takes the reads that may be a little behind: lists,
search, export, reports, analysis, the dashboard's lists. Reads that must see the
caller's own write (a record by id, the key check, anything inside a write) always go
to the primary: see docs/deployment.md, 'Read-your-writes'.

The replica is used only while its lag is at most ``AICRM_READ_MAX_LAG`` seconds;
when it lags more, or cannot be reached, reads go to the primary and a warning says
so (once per change, not once per read). :class:`Router` checks at most every
``check_every`` seconds, so a request pays for a check at most once a second.

:func:`replication_lag` is the primary's view of its standbys, for work that writes
a lot (the online backfill) and should wait while the replicas fall behind.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aicrm.db._connection import Connection, Target, connect
from aicrm.errors import ConnectionFailed

log = logging.getLogger("aicrm.db._routing")

CHECK_EVERY = 1.0  # seconds between two checks of a healthy replica
RETRY_EVERY = 5.0  # seconds between two checks of a replica found down or behind
PROBE_TIMEOUT = 3  # seconds to connect to the replica for a check

# On the replica, given the primary's WAL position read just before (or NULL). Having
# replayed up to it: no lag, however old the last replayed transaction. Else the age
# of the last replayed transaction (NULL before the first one since start-up). A
# standby whose WAL receiver is not running cannot know how far behind it is: NULL.
# A server not in recovery (a promoted standby) is as fresh as it gets.
REPLICA_LAG = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0::float8
    WHEN pg_last_wal_replay_lsn() >= %(primary_lsn)s::pg_lsn THEN 0::float8
    WHEN NOT EXISTS (SELECT FROM pg_stat_wal_receiver WHERE pid IS NOT NULL) THEN NULL
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
         AND %(primary_lsn)s::pg_lsn IS NULL THEN 0::float8
    ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
END
"""
# The insert position, not the write position: with synchronous_commit off a commit
# returns before its WAL is written, and a standby that has replayed everything written
# may still lack it (the same reason as the online backfill's --max-wal-rate).
PRIMARY_LSN = "SELECT pg_current_wal_insert_lsn()::text"

# On the primary: the largest replay lag of its streaming standbys, 0 for one that
# has replayed everything written. replay_lag grows while a standby's replay stands
# still and WAL keeps coming (the walsender times the oldest unreplayed WAL).
# Needs pg_monitor (or pg_read_all_stats) to see the LSNs: without, NULL.
PRIMARY_LAG = """
SELECT count(*),
       max(CASE WHEN replay_lsn >= pg_current_wal_lsn() THEN 0
                ELSE coalesce(extract(epoch FROM replay_lag), 0) END)::float8,
       bool_or(replay_lsn IS NULL)
FROM pg_stat_replication
"""

# Standbys whose progress this login may not see (without pg_monitor, which includes
# pg_read_all_stats, their LSNs are NULL); not a standby still starting up, whose
# replay_lsn is NULL too.
HIDDEN_REPLICAS = """
SELECT count(*) FROM pg_stat_replication
WHERE replay_lsn IS NULL AND NOT pg_has_role('pg_read_all_stats', 'USAGE')
"""


def replica_lag(conn: Connection, primary_lsn: str | None = None) -> float | None:
    """How many seconds the server of ``conn`` (a streaming standby) is behind its
    primary: 0 when it has replayed up to ``primary_lsn`` (the primary's
    ``pg_current_wal_insert_lsn()`` read just before; without it, all it has received), or
    when it is not a standby; None when it cannot tell (its WAL receiver is not
    running, or it has replayed no transaction since it started)."""
    row = conn.execute(REPLICA_LAG, {"primary_lsn": primary_lsn}).fetchone()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))


def primary_lsn(conn: Connection) -> str:
    """The primary's current WAL insert position (``pg_current_wal_insert_lsn()``): every
    transaction that has committed is before it, even one not written yet."""
    row = conn.execute(PRIMARY_LSN).fetchone()
    assert row is not None
    return str(row[0])


def replication_lag(conn: Connection) -> float | None:
    """On the primary: the largest lag of its standbys in seconds (0 when they have
    replayed everything); None when it has none, or when this login may not see
    their progress (grant it ``pg_monitor``).

    For bulk writers that should not outrun the replicas: wait while this is above
    the bound (the online backfill's ``max_replica_lag``)."""
    row = conn.execute(PRIMARY_LAG).fetchone()
    if row is None or not row[0] or row[2]:
        return None
    return float(row[1])


def hidden_replicas(conn: Connection) -> int:
    """On the primary: how many streaming standbys this login sees without their
    progress (it lacks ``pg_monitor``), for which :func:`replication_lag` says None."""
    row = conn.execute(HIDDEN_REPLICAS).fetchone()
    return int(row[0]) if row else 0


def wait_for_replicas(
    conn: Connection,
    bound: float,
    *,
    timeout: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> float | None:
    """Throttle for bulk writers: return once :func:`replication_lag` is at most
    ``bound`` seconds (at once when there are no standbys), or after ``timeout``
    seconds of waiting; the last lag seen. Waits in steps of a tenth of the bound
    (between 50 ms and 1 s), which is the pace of a throttle, not a synchronisation."""
    deadline = time.monotonic() + timeout
    step = min(1.0, max(0.05, bound / 10))
    while True:
        lag = replication_lag(conn)
        if lag is None or lag <= bound or time.monotonic() >= deadline:
            return lag
        sleep(step)


@dataclass(frozen=True)
class Verdict:
    """The last check of the replica: usable or not, and why."""

    usable: bool
    reason: str
    at: float


def _kind(verdict: Verdict) -> tuple[bool, str]:
    """A verdict without its figures: 'it lags 3.1 s' and 'it lags 4.0 s' are one."""
    return verdict.usable, re.split(r"[\d(]", verdict.reason, maxsplit=1)[0]


def judge(lag: float | None, bound: float, now: float) -> Verdict:
    """The verdict on a replica that lags ``lag`` seconds (None: unknown)."""
    if lag is None:
        return Verdict(False, "it cannot tell its lag (not streaming, or no replay yet)", now)
    if lag > bound:
        return Verdict(False, f"it lags {lag:.1f} s, more than AICRM_READ_MAX_LAG={bound:g}", now)
    return Verdict(True, f"it lags {lag:.1f} s", now)


def _with_timeout(where: Target, seconds: int) -> Target:
    if "connect_timeout" in conninfo_to_dict(where.conninfo):
        return where
    return dataclasses.replace(
        where, conninfo=make_conninfo(where.conninfo, connect_timeout=seconds)
    )


def _failure(exc: psycopg.Error) -> str:
    if isinstance(exc, psycopg.OperationalError):
        return f"it cannot be reached (its connection broke: {type(exc).__name__})"
    return f"checking its lag failed ({type(exc).__name__})"


def describe_fallback(replica: Target, reason: str) -> str:
    return f"reads go to the primary: the replica {replica.describe()} is not used, {reason}"


class Router:
    """Decides, at most every ``check_every`` seconds, whether reads may go to the
    replica of ``primary`` (``primary.read``). Thread-safe: one thread checks while
    the others keep the previous verdict. Logs each change of verdict."""

    def __init__(
        self,
        primary: Target,
        *,
        check_every: float = CHECK_EVERY,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        if primary.read is None:
            raise ValueError("Router needs a target with a read replica (AICRM_READ_URL)")
        self.primary = primary
        self.replica: Target = primary.read
        # a check must not hold a request for libpq's whole connect_timeout
        self._probe_target = _with_timeout(primary.read, PROBE_TIMEOUT)
        self.bound = primary.read_max_lag
        self.check_every = check_every
        self.retry_every = retry_every
        self._lock = threading.Lock()
        self._probe: Connection | None = None
        self._primary: Connection | None = None
        self._verdict: Verdict | None = None

    def use_replica(self) -> bool:
        """Whether the next read may go to the replica (checks it when due)."""
        verdict = self._verdict
        if verdict is not None and not self._due(verdict):
            return verdict.usable
        if not self._lock.acquire(blocking=verdict is None):
            return verdict.usable if verdict is not None else False
        try:
            verdict = self._verdict
            if verdict is None or self._due(verdict):
                self._set(self._check())
            assert self._verdict is not None
            return self._verdict.usable
        finally:
            self._lock.release()

    def failed(self, reason: str) -> None:
        """Record that a read could not use the replica (it goes to the primary)."""
        with self._lock:
            self._set(Verdict(False, reason, time.monotonic()))

    def close(self) -> None:
        with self._lock:
            for conn in (self._probe, self._primary):
                if conn is not None:
                    conn.close()
            self._probe = self._primary = None

    def _primary_lsn(self) -> str | None:
        """The primary's WAL position; None when it cannot be read (then the replica
        is judged on its own)."""
        try:
            if self._primary is None or self._primary.closed or self._primary.broken:
                self._primary = connect(
                    self.primary, autocommit=True, application_name="aicrm lag check"
                )
            return primary_lsn(self._primary)
        except (ConnectionFailed, psycopg.Error):
            if self._primary is not None:
                self._primary.close()
                self._primary = None
            return None

    def _due(self, verdict: Verdict) -> bool:
        every = self.check_every if verdict.usable else self.retry_every
        return time.monotonic() - verdict.at >= every

    def _check(self) -> Verdict:
        now = time.monotonic()
        position = self._primary_lsn()
        try:
            if self._probe is None or self._probe.closed or self._probe.broken:
                self._probe = connect(
                    self._probe_target, autocommit=True, application_name="aicrm lag check"
                )
            lag = replica_lag(self._probe, position)
        except ConnectionFailed as exc:
            return Verdict(False, f"it cannot be reached ({exc})", now)
        except psycopg.Error as exc:
            if self._probe is not None:
                self._probe.close()
                self._probe = None
            return Verdict(False, _failure(exc), now)
        return judge(lag, self.bound, now)

    def _set(self, verdict: Verdict) -> None:
        before = self._verdict
        self._verdict = verdict
        if before is not None and _kind(before) == _kind(verdict):
            return  # said already: once per change, not once per read
        if verdict.usable:
            log.info("reads go to the replica %s (%s)", self.replica.describe(), verdict.reason)
        else:
            log.warning("%s", describe_fallback(self.replica, verdict.reason))


def connect_read(
    where: Target | None = None, *, autocommit: bool = True, application_name: str = "aicrm"
) -> Connection:
    """A connection for read-only work: to the replica when there is one
    and it lags at most the bound, else to the primary (saying why in the log).

    Raises :class:`ConnectionFailed` when the primary cannot be reached."""
    from aicrm.db._connection import target

    where = where or target()
    if where.read is not None:
        router = Router(where)
        try:
            if router.use_replica():
                return connect(where.read, autocommit=autocommit, application_name=application_name)
        except ConnectionFailed as exc:  # gone between the check and now
            router.failed(f"it cannot be reached ({exc})")
        finally:
            router.close()
    return connect(where, autocommit=autocommit, application_name=application_name)
