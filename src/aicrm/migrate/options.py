"""How a run is made: :class:`Options` (every mode) and :class:`OnlineSettings`.

A module of its own so that the runner and the online mode both read them without
importing each other. Other parts of the engine add fields here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aicrm import config

Progress = Callable[[str], None]


@dataclass
class OnlineSettings:
    """How an online run paces itself. ``batch_seconds``: the time each backfill
    batch aims at (the batch size adapts to it); ``pause_ratio``: after each batch, a
    pause this many times as long as the batch's transaction took (1: the backfill
    works at most half the time, so the application keeps a share of the server's CPU
    and WAL flushes on a busy machine; 0: flat out); ``throttle``: a further fixed
    pause after each batch (seconds); ``lock_timeout``: the bound on each wait for a table lock
    (seconds; a waiting DDL statement makes the application's queries queue behind
    it, so this is short), retried ``lock_retries`` times with backoff;
    ``row_lock_timeout``: the bound on a batch's wait for rows the application is
    writing; ``ddl_wait``: the bound on the waits of statements that do not block
    the application (CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT);
    ``max_replica_lag``: after each batch, wait while a streaming standby lags more
    than this many seconds (None: no throttle; see docs/online-migration.md);
    ``max_wal_rate``: the WAL the backfill may write, in bytes per second on average
    since it started, measured with ``pg_current_wal_insert_lsn()`` after each batch (None:
    no bound): every commit of the application waits for the WAL before it to be
    flushed, the backfill's included, so on a busy disk the backfill's WAL rate is
    the application's commit latency."""

    batch_seconds: float = 0.05
    pause_ratio: float = 1.0
    throttle: float = 0.0
    lock_timeout: float = 0.05
    lock_retries: int = 30
    row_lock_timeout: float = 1.0
    ddl_wait: float = 60.0
    first_batch: int = 500
    min_batch: int = 50
    max_batch: int = 50_000
    max_replica_lag: float | None = None
    max_wal_rate: float | None = None


@dataclass
class Options:
    """How to run. ``lock_timeout`` bounds each wait for a table lock (seconds);
    ``lock_retries`` is how many more attempts follow a lock timeout, with backoff;
    ``runner_wait`` bounds the wait for another runner to finish;
    ``statement_timeout`` bounds each of the run's own statements (seconds, 0: no
    bound; the backup's pg_dump is bounded by nothing but its own run)."""

    target_version: int | None = None
    dry_run: bool = False
    allow_drift: bool = False
    archive_orphans: bool = False
    # --map-status OLD=NEW: open leads' statuses mapped on the way to 008 (status_map)
    map_status: dict[str, str] = field(default_factory=dict)
    lock_timeout: float = 5.0
    lock_retries: int = 3
    runner_wait: float = 10.0
    statement_timeout: float = 0.0
    # Connections the first migration's integrity checks run on, side by side, before
    # the transaction (1: one after the other on the runner's own connection).
    check_connections: int = 2
    backup_dir: Path = field(default_factory=config.backup_dir)
    migrations_dir: Path | None = None
    progress: Progress | None = None
    # The online mode (aicrm.migrate._online): set to run online; an unfinished
    # online run is resumed whatever this says.
    online: OnlineSettings | None = None
    # The compatibility window (aicrm.migrate.compat): open one with 001, and recreate
    # the user's views over the dropped columns on it.
    compat_window: bool = False
    rebuild_dependents: bool = False

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


__all__ = ["OnlineSettings", "Options", "Progress"]
