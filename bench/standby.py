"""A streaming standby of the bench's server, and a sampler of its replay lag.

The bench's own copy of tests/standby.py's approach (the bench does not import
tests/): ``pg_basebackup -R`` from the primary's Unix socket (initdb's pg_hba.conf
lets local replication connections in), with a replication slot so the primary
keeps the WAL the standby has not received yet, then ``pg_ctl start`` on a socket
folder of its own (no TCP port). As root, both run as the embedded server's user
(PostgreSQL refuses to run as root). :class:`LagWatch` samples, in a thread, the
lag the primary sees (``aicrm.db.replication_lag``: the walsender's replay_lag, what
the online backfill's throttle waits on) and the standby's own (the age of its last
replayed transaction when it has not replayed up to the primary's position).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aicrm.db import embedded
from aicrm.db._routing import primary_lsn, replica_lag, replication_lag

RUN_AS = "pgserver"
SLOT = "aicrm_bench_standby"
READY_TIMEOUT = 120.0  # seconds
DROP_SLOT = (
    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s"
)


def _run(*args: str) -> None:
    account = pwd.getpwnam(RUN_AS) if os.geteuid() == 0 else None
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=[] if account else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-2000:]}")


@dataclass
class Standby:
    """A running standby of ``primary`` (an admin conninfo over a Unix socket)."""

    primary: str
    folder: Path
    port: int = 5433

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def conninfo(self, dbname: str = "postgres") -> str:
        return make_conninfo(host=str(self.folder), port=self.port, user="postgres", dbname=dbname)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _run(str(embedded.bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        with psycopg.connect(self.primary, autocommit=True) as conn:
            conn.execute(DROP_SLOT, (SLOT,))
        shutil.rmtree(self.folder, ignore_errors=True)


def make(primary: str) -> Standby:
    """A streaming standby of ``primary``, running and streaming."""
    params = conninfo_to_dict(primary)
    host = str(params.get("host", ""))
    if not host.startswith("/"):
        raise SystemExit("error: --replica needs the embedded server (a Unix socket primary)")
    folder = Path(tempfile.mkdtemp(prefix="aicrm-bench-standby-"))  # short: socket paths
    if os.geteuid() == 0:
        account = pwd.getpwnam(RUN_AS)
        os.chown(folder, account.pw_uid, account.pw_gid)
    found = Standby(primary, folder)
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute(DROP_SLOT, (SLOT,))  # a slot left by an interrupted run
    _run(
        str(embedded.bin_dir() / "pg_basebackup"),
        *("-D", str(found.data), "-R", "-X", "stream", "-c", "fast", "-C", "-S", SLOT),
        *("-h", host, "-p", str(params.get("port", 5432)), "-U", "postgres"),
    )
    _run(
        str(embedded.bin_dir() / "pg_ctl"),
        *("-D", str(found.data), "-l", str(folder / "standby.log")),
        *("-o", f"-p {found.port} -k {folder} -h '' -c shared_buffers=64MB", "-w", "start"),
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with psycopg.connect(found.conninfo(), connect_timeout=3) as conn:
                row = conn.execute(
                    "SELECT EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')"
                ).fetchone()
                if row and row[0]:
                    return found
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            found.destroy()
            raise RuntimeError("the standby did not start streaming")
        time.sleep(0.2)  # polling a condition under a deadline


@dataclass
class LagWatch:
    """Samples the standby's lag every ``interval`` seconds in a thread, until stopped:
    ``primary_max`` (the primary's view), ``standby_max`` (the standby's own)."""

    primary: str
    standby: str | None  # None: no standby, nothing sampled
    interval: float = 0.1
    primary_max: float = 0.0
    standby_max: float = 0.0
    samples: int = 0
    error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LagWatch:
        self._thread = threading.Thread(target=self._run, name="lag-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        if self.standby is None:
            return
        try:
            with (
                psycopg.connect(self.primary, autocommit=True) as primary,
                psycopg.connect(self.standby, autocommit=True) as standby,
            ):
                while not self._stop.wait(self.interval):
                    seen = replication_lag(primary)
                    own = replica_lag(standby, primary_lsn(primary))
                    self.primary_max = max(self.primary_max, seen or 0.0)
                    self.standby_max = max(self.standby_max, own or 0.0)
                    self.samples += 1
        except psycopg.Error as exc:
            self.error = str(exc).splitlines()[0]


__all__ = ["LagWatch", "Standby", "make"]
