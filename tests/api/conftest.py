"""A real uvicorn server on 127.0.0.1 (random free port) over a real database, and
real API keys of each scope, for the tests of each module; httpx is the client.

With ``AICRM_TEST_POOLER=pgbouncer`` the app reaches its database through a real
PgBouncer in transaction-pooling mode (tests/pgbouncer.py), with
``AICRM_POOL_MODE=transaction``: ``scripts/test`` runs tests/api a second time so.
The tests' own setup and checks (``live.db``) still connect directly.

The listening socket is bound and listening before the server starts, so a request
sent while the app is still starting (opening its pool) waits in the socket's
backlog: no polling and no sleeping to find out when the server is up.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from aicrm import apikeys, config
from aicrm.db import target
from aicrm.server import create_app
from tests.conftest import Database, Server, clean_env, create_database, drop_database
from tests.pgbouncer import pgbouncer  # noqa: F401 - a fixture

PROBLEM = "application/problem+json"


@dataclass
class Live:
    """A running API server, its database, and a token per scope (read, write, admin)."""

    url: str
    db: Database
    app: Any = None
    tokens: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, scope: str | None = "write", **kwargs: Any) -> httpx.Client:
        """An httpx client for the API, authenticated with the key of ``scope`` (or none)."""
        headers = {"Authorization": f"Bearer {self.tokens[scope]}"} if scope else {}
        headers.update(kwargs.pop("headers", {}))
        made = httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)
        self.clients.append(made)
        return made

    def key(self, name: str, scope: str) -> str:
        """A new key's token."""
        with self.db.connect() as conn:
            _, token = apikeys.create_key(conn, name, scope)
            conn.commit()
        return token


def start_server(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{port}"


def stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=60)
    assert not thread.is_alive(), "the API server did not stop"


def through_pooler() -> bool:
    """Whether the API tests run through PgBouncer (``AICRM_TEST_POOLER=pgbouncer``)."""
    return os.environ.get("AICRM_TEST_POOLER", "") == "pgbouncer"


@pytest.fixture(scope="module")
def live(
    request: pytest.FixtureRequest,
    server: Server,
    head_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    """A server over a fresh database at the newest schema, for one test module."""
    name = create_database(server, template=head_template)
    workdir = tmp_path_factory.mktemp("api")
    home = workdir / "home"
    home.mkdir()
    url = server.conninfo(name)
    env = clean_env(DATABASE_URL=url, AICRM_HOME=str(home), BACKUP_DIR=str(workdir / "backups"))
    db = Database(name, url, server, Path(workdir), env)
    where = db.target()
    if through_pooler():
        bouncer = request.getfixturevalue("pgbouncer")
        where = target(
            config.resolve(
                {
                    "DATABASE_URL": bouncer.url(name),
                    "AICRM_HOME": str(home),
                    "AICRM_POOL_MODE": "transaction",
                }
            )
        )
    app = create_app(where, pool_size=4)
    uvicorn_server, thread, base = start_server(app)
    found = Live(base, db, app)
    suffix = uuid.uuid4().hex[:8]
    try:
        for scope in apikeys.SCOPES:
            found.names[scope] = f"{scope}-bot-{suffix}"
            found.tokens[scope] = found.key(found.names[scope], scope)
        yield found
    finally:
        for made in found.clients:
            made.close()
        stop_server(uvicorn_server, thread)
        drop_database(server, name)


@pytest.fixture
def api(live: Live) -> httpx.Client:
    """A client with a write key."""
    return live.client("write")


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with that status; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    for member, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
        assert isinstance(body.get(member), kind), (member, body)
    assert body["status"] == status and body["detail"], body
    return body
