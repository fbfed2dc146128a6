"""A real PgBouncer in transaction-pooling mode, for tests (Debian's ``pgbouncer``).

:func:`start_pgbouncer` starts one on a free loopback port in front of a given
server and returns its conninfo and a function that stops it. PgBouncer refuses to
run as root ("PgBouncer should not run as root"): as root it runs as the owner of
the server's socket directory (the embedded server's own user, the only one that
may use that socket) or, for a TCP server, as ``nobody``. Its files live in a fresh
directory that user owns; its log is copied to ``workdir`` when it stops.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

CONFIG = """[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 200
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = {log}
"""


def available() -> bool:
    return Path(PGBOUNCER).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as(host: str) -> tuple[int, int] | None:
    """The (uid, gid) to run PgBouncer as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        owner = Path(host).stat()
        return owner.st_uid, owner.st_gid
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def start_pgbouncer(
    server_conninfo: str, workdir: Path, pool_size: int = 4
) -> tuple[str, Callable[[], None]]:
    """Start PgBouncer (transaction pooling) in front of ``server_conninfo``.

    Returns the conninfo of the pooler (the server's, with host and port replaced)
    and ``stop()``. Raises RuntimeError with the pooler's log if it does not answer
    within 30 s."""
    params = conninfo_to_dict(server_conninfo)
    host = str(params.get("host") or "127.0.0.1")
    port = str(params.get("port") or "5432")
    user = str(params.get("user") or "postgres")
    listen = _free_port()
    run_as = _run_as(host)
    home = Path(tempfile.mkdtemp(prefix="aicrm-pgbouncer-"))
    log = home / "pgbouncer.log"
    auth_file = home / "userlist.txt"
    auth_file.write_text(f'"{user}" ""\n')
    ini = home / "pgbouncer.ini"
    ini.write_text(
        CONFIG.format(
            host=host,
            port=port,
            listen=listen,
            auth_file=auth_file,
            pool_size=pool_size,
            log=log,
        )
    )
    if run_as is not None:
        for path in (home, auth_file, ini):
            os.chown(path, *run_as)
    proc = subprocess.Popen(
        [PGBOUNCER, str(ini)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        user=run_as[0] if run_as else None,
        group=run_as[1] if run_as else None,
        extra_groups=[] if run_as else None,
    )
    pooled = make_conninfo(server_conninfo, host="127.0.0.1", port=str(listen))

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
        workdir.mkdir(parents=True, exist_ok=True)
        if log.exists():
            shutil.copyfile(log, workdir / "pgbouncer.log")
        shutil.rmtree(home, ignore_errors=True)

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(pooled, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return pooled, stop
        except psycopg.OperationalError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                text = log.read_text() if log.exists() else ""
                stop()
                raise RuntimeError(f"pgbouncer did not start: {exc}\n{err}\n{text}") from None
            time.sleep(0.1)  # polling the pooler's port with a bounded deadline
