"""The API, the CLI and the library through a real PgBouncer in transaction-pooling mode.

Issue 13 reproduced: 500 requests through PgBouncer 1.18 failed 362 with psycopg's
prepared statements ('bind message supplies 2 parameters, but prepared statement
"_pg3_1" requires 1', 'prepared statement "_pg3_0" does not exist') before
``AICRM_POOL_MODE=transaction`` switched them off.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from aicrm import apikeys, config
from aicrm.db import connect, target
from aicrm.server import create_app
from tests.api.conftest import start_server, stop_server
from tests.conftest import Database, Server, clean_env, create_database, drop_database
from tests.pgbouncer import Bouncer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pooled(
    server: Server,
    head_template: str,
    pgbouncer: Bouncer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Database]:
    """A database at the newest schema whose env points aicrm at it through PgBouncer."""
    name = create_database(server, template=head_template)
    workdir = tmp_path_factory.mktemp("pooled")
    (workdir / "home").mkdir()
    env = clean_env(
        DATABASE_URL=pgbouncer.url(name),
        AICRM_POOL_MODE="transaction",
        AICRM_HOME=str(workdir / "home"),
        BACKUP_DIR=str(workdir / "backups"),
    )
    yield Database(name, server.conninfo(name), server, Path(workdir), env)
    drop_database(server, name)


def test_the_fixture_pools_by_transaction(pgbouncer: Bouncer, pooled: Database) -> None:
    """Session state set by one client shows up in another: the server connection
    went back to the pool at the end of the transaction (LIFO: the next client gets
    it). This is why aicrm sets everything with SET LOCAL / set_config(..., true)."""
    info = pgbouncer.conninfo(pooled.name)
    with (
        psycopg.connect(info, autocommit=True, prepare_threshold=None) as one,
        psycopg.connect(info, autocommit=True, prepare_threshold=None) as two,
    ):
        one.execute("SELECT set_config('aicrm.probe', 'leaked', false)")
        row = two.execute("SELECT current_setting('aicrm.probe', true)").fetchone()
        assert row == ("leaked",)
        two.execute("RESET aicrm.probe")


def test_500_requests_through_pgbouncer_all_succeed(pgbouncer: Bouncer, pooled: Database) -> None:
    where = target(config.resolve(pooled.env))
    assert where.pooled and where.port == str(pgbouncer.port)
    with connect(where) as conn:
        _, token = apikeys.create_key(conn, f"pooled-{uuid.uuid4().hex[:6]}", "write")
        conn.commit()
    app = create_app(where, pool_size=4)
    uvicorn_server, thread, base = start_server(app)
    try:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            ids = []
            for i in range(5):
                made = client.post(
                    "/api/leads",
                    json={"first_name": f"P{i}", "email": f"p{i}-{uuid.uuid4().hex[:6]}@x.io"},
                )
                assert made.status_code == 201, made.text
                ids.append(made.json()["id"])

            def one(i: int) -> tuple[int, str]:
                lead = ids[i % len(ids)]
                kind = i % 5
                if kind == 0:
                    got = client.get(f"/api/leads/{lead}")
                elif kind == 1:
                    got = client.get("/api/leads", params={"q": "P", "limit": 3})
                elif kind == 2:
                    got = client.get("/api/reports/status-funnel")
                elif kind == 3:
                    read = client.get(f"/api/leads/{lead}")
                    got = client.patch(
                        f"/api/leads/{lead}",
                        json={"last_name": f"n{i}"},
                        headers={"If-Match": read.headers["etag"]},
                    )
                    if got.status_code == 412:  # another thread changed it in between
                        return 200, ""
                else:
                    got = client.get(f"/api/clients/{uuid.uuid4()}")
                    return (200 if got.status_code == 404 else got.status_code), got.text
                return got.status_code, got.text

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(one, range(500)))
    finally:
        stop_server(uvicorn_server, thread)
    failed = [(status, text[:200]) for status, text in results if status != 200]
    assert failed == [], f"{len(failed)} of 500 failed: {failed[:3]}"


def test_the_cli_works_through_pgbouncer(pooled: Database) -> None:
    before = pooled.scalar("SELECT count(*) FROM leads")
    for i in range(3):
        made = pooled.cli("leads", "create", "--first-name", f"C{i}", "--json")
        assert made.returncode == 0, made.stderr
    source = pooled.workdir / "leads.csv"
    source.write_text("first_name,email\nAnn,ann-pool@x.io\nBob,bob-pool@y.io\n")
    imported = pooled.cli("leads", "import", str(source), "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["imported"] == 2
    listed = pooled.cli("leads", "list", "--json", "--limit", "100")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["items"]) == before + 5
    assert pooled.scalar("SELECT count(*) FROM leads") == before + 5
