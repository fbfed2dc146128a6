"""A primary and its streaming standby, on loopback, from the embedded server's binaries.

The primary is a new embedded server (its own folder, its own Unix socket); the
standby is made with ``pg_basebackup -R`` (which writes ``standby.signal`` and
``primary_conninfo``) and started with ``pg_ctl`` on a socket folder of its own.
When the tests run as root, both run as the embedded server's user (``pgserver``):
PostgreSQL refuses to run as root. initdb's pg_hba.conf already lets local
replication connections in (``local replication all trust``).

Lag is made deterministic with ``pg_wal_replay_pause()`` on the standby: WAL keeps
arriving, nothing is replayed, the lag grows.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from aicrm.db import embedded

RUN_AS = "pgserver"
READY_TIMEOUT = 60.0  # seconds


def _account() -> pwd.struct_passwd | None:
    return pwd.getpwnam(RUN_AS) if os.geteuid() == 0 else None


def _run(*args: str) -> None:
    account = _account()
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=[] if account else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-2000:]}")


@dataclass
class Replicated:
    """A primary and its standby: conninfos, and the standby's start, stop and replay."""

    home: Path  # the primary's AICRM_HOME
    folder: Path  # the standby's data folder's parent (also its socket folder)
    primary_socket: str
    primary_port: int
    port: int = 5433

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def primary(self, dbname: str = "postgres") -> str:
        return make_conninfo(
            host=self.primary_socket, port=self.primary_port, user="postgres", dbname=dbname
        )

    def standby(self, dbname: str = "postgres") -> str:
        return make_conninfo(host=str(self.folder), port=self.port, user="postgres", dbname=dbname)

    def primary_url(self, dbname: str) -> str:
        return self.primary(dbname)

    def start(self) -> None:
        """Start the standby; wait (bounded) until it answers, in recovery, streaming."""
        _run(
            str(embedded.bin_dir() / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "standby.log"),
            "-o",
            f"-p {self.port} -k {self.folder} -h '' -c shared_buffers=32MB",
            "-w",
            "start",
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.standby(), connect_timeout=3) as conn:
                    row = conn.execute(
                        "SELECT pg_is_in_recovery() AND EXISTS "
                        "(SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')"
                    ).fetchone()
                    if row and row[0]:
                        return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not become ready")
            time.sleep(0.1)  # polling a condition under a deadline

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _run(
                str(embedded.bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
            )

    def replay(self, on: bool) -> None:
        """Resume (True) or pause (False) WAL replay on the standby."""
        call = "SELECT pg_wal_replay_resume()" if on else "SELECT pg_wal_replay_pause()"
        with psycopg.connect(self.standby(), autocommit=True) as conn:
            conn.execute(call)

    def wait_replayed(self, timeout: float = 60.0) -> None:
        """Wait (bounded) until the standby has replayed everything the primary wrote."""
        with psycopg.connect(self.primary(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            assert row is not None
            lsn = row[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.standby(), autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
                ).fetchone()
                if row and row[0]:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"the standby did not replay up to {lsn}")
                time.sleep(0.05)  # polling a condition under a deadline


def make(folder_prefix: str = "aicrm-standby-") -> Replicated:
    """A new primary (embedded) and a streaming standby of it, both running."""
    account = _account()
    home = Path(tempfile.mkdtemp(prefix="aicrm-primary-"))
    embedded.conninfo(home, dbname="postgres")
    running = embedded.running(home)
    assert running is not None
    # short: a Unix socket's path must fit in 107 bytes
    folder = Path(tempfile.mkdtemp(prefix=folder_prefix))
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    found = Replicated(home, folder, str(running.socket_dir), running.port)
    _run(
        str(embedded.bin_dir() / "pg_basebackup"),
        "-D",
        str(found.data),
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
        "-h",
        str(running.socket_dir),
        "-p",
        str(running.port),
        "-U",
        "postgres",
    )
    found.start()
    return found


def destroy(found: Replicated) -> None:
    try:
        found.stop()
    finally:
        embedded.stop(found.home)
        shutil.rmtree(found.folder, ignore_errors=True)
        shutil.rmtree(found.home, ignore_errors=True)


@pytest.fixture(scope="session")
def replicated() -> Iterator[Replicated]:
    """A primary with a streaming standby, for the session (of each xdist worker).
    Tests that stop the standby or pause its replay put it back before they end."""
    found = make()
    try:
        yield found
    finally:
        destroy(found)
