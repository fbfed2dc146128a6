"""Test fixtures: a real PostgreSQL, and a fresh database for every test.

The server is an embedded one started in a temporary folder, unless
``AICRM_TEST_DATABASE_URL`` names another (a superuser login: tests create
databases and roles). If the first connection fails, the whole run stops with
the reason instead of failing every test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aicrm import config
from aicrm.db import Target, embedded, target

REPO = Path(__file__).resolve().parent.parent
TEST_PREFIX = "aicrm_t_"

# Variables that would steer aicrm away from the database under test.
_STEERING = ("DATABASE_URL", *config.DB_VARIABLES, *config.PG_VARIABLES, "AICRM_PG_BIN")


@dataclass
class Server:
    """The PostgreSQL server the suite runs on; ``admin`` is a superuser conninfo."""

    admin: str
    home: Path | None  # the embedded server's AICRM_HOME, when embedded
    major: int = 0

    def conninfo(self, dbname: str) -> str:
        return make_conninfo(self.admin, dbname=dbname)


@dataclass
class Database:
    """A fresh database for one test, and the environment that points aicrm at it."""

    name: str
    url: str
    server: Server
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def connect(self, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url, **kwargs)  # type: ignore[arg-type]

    def target(self) -> Target:
        return target(
            config.resolve({"DATABASE_URL": self.url, "AICRM_HOME": self.env["AICRM_HOME"]})
        )

    def execute(
        self, query: LiteralString | sql.SQL | sql.Composed, params: tuple[Any, ...] | None = None
    ) -> list[tuple[Any, ...]]:
        with self.connect(autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def scalar(
        self, query: LiteralString | sql.SQL | sql.Composed, params: tuple[Any, ...] | None = None
    ) -> Any:
        rows = self.execute(query, params)
        return rows[0][0] if rows else None

    def cli(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m aicrm ARGS`` as a real process against this database."""
        return run_cli(
            *args, env={**self.env, **(env or {})}, cwd=cwd or self.workdir, timeout=timeout
        )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _STEERING}
    env.pop("AICRM_DEBUG", None)
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aicrm", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = os.environ.get("AICRM_TEST_DATABASE_URL")
    if url:
        found = Server(url, None)
    else:
        # Not under pytest's basetemp: every root pytest session resets
        # /tmp/pytest-of-root to 0700, which locks the server's own user out.
        home = Path(tempfile.mkdtemp(prefix="aicrm-test-pg-"))
        try:
            info = embedded.conninfo(home, dbname="postgres")
        except Exception as exc:
            pytest.exit(f"cannot start the embedded PostgreSQL for the tests: {exc}", returncode=3)
        found = Server(info, home)
        throwaway(found)
    try:
        with psycopg.connect(found.admin, autocommit=True, connect_timeout=10) as conn:
            found.major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000  # type: ignore[index]
    except psycopg.Error as exc:
        pytest.exit(f"cannot connect to the test server: {str(exc).splitlines()[0]}", returncode=3)
    yield found
    if found.home is not None:
        embedded.stop(found.home)
        shutil.rmtree(found.home, ignore_errors=True)


# A test server's data is thrown away after the run, so it need not survive a crash
# of the machine: without waiting for each commit's WAL flush (2-3 ms an fsync on the
# CI machines' disks) the suite spends its time on the tests. A crash of PostgreSQL
# itself (the tests kill it on purpose) still loses nothing: the WAL is in the
# operating system's cache. Only the embedded server the suite starts is changed.
THROWAWAY = {"fsync": "off", "synchronous_commit": "off"}


def throwaway(server: Server) -> None:
    if os.environ.get("AICRM_TEST_DURABLE") == "1":
        return
    with psycopg.connect(server.admin, autocommit=True) as conn:
        for name, value in THROWAWAY.items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        conn.execute("SELECT pg_reload_conf()")


def create_database(server: Server, name: str | None = None, template: str | None = None) -> str:
    name = name or f"{TEST_PREFIX}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.admin, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn.execute(query)
    return name


def drop_database(server: Server, name: str) -> None:
    with psycopg.connect(server.admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def db(server: Server, tmp_path: Path) -> Iterator[Database]:
    """A new, empty database, dropped after the test."""
    name = create_database(server)
    home = tmp_path / "home"
    home.mkdir()
    url = server.conninfo(name)
    env = clean_env(DATABASE_URL=url, AICRM_HOME=str(home), BACKUP_DIR=str(tmp_path / "backups"))
    yield Database(name, url, server, tmp_path, env)
    drop_database(server, name)


def host_port_user(url: str) -> tuple[str, str, str]:
    params = conninfo_to_dict(url)
    return (
        str(params.get("host", "")),
        str(params.get("port", "5432")),
        str(params.get("user", "postgres")),
    )


@pytest.fixture(scope="session")
def embedded_server(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An embedded server we control (its pg_hba.conf, its socket), even when the suite
    runs on another server: the main one when it is embedded, else a second one."""
    if server.home is not None:
        yield server
        return
    home = Path(tempfile.mkdtemp(prefix="aicrm-test-pg-"))
    own = Server(embedded.conninfo(home, dbname="postgres"), home, 18)
    yield own
    embedded.stop(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def embedded_db(embedded_server: Server, tmp_path: Path) -> Iterator[Database]:
    """Like ``db``, but always on the embedded server."""
    name = create_database(embedded_server)
    home = tmp_path / "home"
    home.mkdir()
    url = embedded_server.conninfo(name)
    env = clean_env(DATABASE_URL=url, AICRM_HOME=str(home), BACKUP_DIR=str(tmp_path / "backups"))
    yield Database(name, url, embedded_server, tmp_path, env)
    drop_database(embedded_server, name)


def head_migrations() -> Path | None:
    """The migrations the CRM tests run on (the packaged ones)."""
    wip = os.environ.get("AICRM_WIP_MIGRATIONS")
    return Path(wip) if wip else None


@pytest.fixture(scope="session")
def head_template(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to the newest version, cloned by ``crm_db`` for each test."""
    from aicrm.migrate import Options, migrate

    name = create_database(server, f"aicrm_tpl_{uuid.uuid4().hex[:10]}")
    home = tmp_path_factory.mktemp("tpl")
    where = target(config.resolve({"DATABASE_URL": server.conninfo(name), "AICRM_HOME": str(home)}))
    migrate(Options(backup_dir=home / "backups", migrations_dir=head_migrations()), where)
    yield name
    drop_database(server, name)


@pytest.fixture
def crm_db(server: Server, head_template: str, tmp_path: Path) -> Iterator[Database]:
    """A fresh database at the newest version (a clone of ``head_template``)."""
    name = create_database(server, template=head_template)
    home = tmp_path / "home"
    home.mkdir()
    url = server.conninfo(name)
    env = clean_env(DATABASE_URL=url, AICRM_HOME=str(home), BACKUP_DIR=str(tmp_path / "backups"))
    yield Database(name, url, server, tmp_path, env)
    drop_database(server, name)
