"""The API with a read replica (AICRM_READ_URL) on a real streaming standby.

Lists, search, reports, analysis and the dashboard's lists read from the replica
while it lags at most AICRM_READ_MAX_LAG; a record by id (so the GET after a PATCH)
and the key check always read from the primary. Replay paused on the standby makes
the replica's staleness visible, and its lag deterministic.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from aicrm import apikeys, config
from aicrm.db import Router, target
from aicrm.errors import Unauthorized
from aicrm.mcp._backend import Backend
from aicrm.migrate import Options, migrate
from aicrm.server import create_app
from tests.api.conftest import start_server, stop_server
from tests.conftest import clean_env, head_migrations, run_cli
from tests.standby import Replicated, replicated  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow


@dataclass
class ReplicaApi:
    client: httpx.Client
    router: Router
    replicated: Replicated
    env: dict[str, str]
    workdir: Path


@pytest.fixture(scope="module")
def replica_api(
    replicated: Replicated,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ReplicaApi]:
    name = f"aicrm_ra_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(replicated.primary(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    home = tmp_path_factory.mktemp("replica-api")
    env = {
        "DATABASE_URL": replicated.primary(name),
        "AICRM_READ_URL": replicated.standby(name),
        "AICRM_READ_MAX_LAG": "3600",
        "AICRM_HOME": str(home),
    }
    where = target(config.resolve(env))
    migrate(Options(backup_dir=Path(home) / "backups", migrations_dir=head_migrations()), where)
    with psycopg.connect(where.conninfo) as conn:
        _, token = apikeys.create_key(conn, "replica-bot", "write")
        conn.commit()
    replicated.wait_replayed()
    app = create_app(where, pool_size=2, check_every=0)
    server, thread, base = start_server(app)
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    try:
        client.get("/api/ping").raise_for_status()  # the lifespan has run: the router exists
        yield ReplicaApi(client, app.state.router, replicated, clean_env(**env), Path(home))
    finally:
        client.close()
        stop_server(server, thread)
        with psycopg.connect(replicated.primary(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def create(client: httpx.Client, first_name: str) -> str:
    made = client.post("/api/leads", json={"first_name": first_name, "last_name": "Replica"})
    assert made.status_code == 201, made.text
    lead_id: str = made.json()["id"]
    return lead_id


def listed(client: httpx.Client, first_name: str) -> bool:
    found = client.get("/api/leads", params={"q": first_name})
    assert found.status_code == 200, found.text
    return any(item["first_name"] == first_name for item in found.json()["items"])


def test_lists_read_the_replica_and_reads_by_id_the_primary(replica_api: ReplicaApi) -> None:
    client, standby = replica_api.client, replica_api.replicated
    replica_api.router.bound = 3600.0
    seen = f"Seen{uuid.uuid4().hex[:6]}"
    seen_id = create(client, seen)
    standby.wait_replayed()
    standby.replay(False)
    try:
        unseen = f"Unseen{uuid.uuid4().hex[:6]}"
        unseen_id = create(client, unseen)
        assert listed(client, seen)  # the list comes from the replica...
        assert not listed(client, unseen)  # ...which has not replayed the new lead yet
        page = client.get("/leads", params={"q": "Replica"})  # the dashboard's list too
        assert page.status_code == 200 and seen_id in page.text and unseen_id not in page.text
        # read-your-writes: a record by id comes from the primary, after a PATCH too
        assert client.get(f"/api/leads/{unseen_id}").status_code == 200
        read = client.get(f"/api/leads/{unseen_id}")
        patched = client.patch(
            f"/api/leads/{unseen_id}",
            json={"last_name": "Changed"},
            headers={"If-Match": read.headers["etag"]},
        )
        assert patched.status_code == 200, patched.text
        again = client.get(f"/api/leads/{unseen_id}")
        assert again.json()["last_name"] == "Changed"
        assert again.headers["etag"] == patched.headers["etag"]
    finally:
        standby.replay(True)
    standby.wait_replayed()
    assert listed(client, unseen)


def test_a_lagging_replica_is_skipped_and_the_log_says_so(
    replica_api: ReplicaApi, caplog: pytest.LogCaptureFixture
) -> None:
    client, standby = replica_api.client, replica_api.replicated
    replica_api.router.bound = 0.5
    standby.replay(False)
    try:
        name = f"Lagged{uuid.uuid4().hex[:6]}"
        create(client, name)
        deadline = time.monotonic() + 60
        with caplog.at_level(logging.WARNING, logger="aicrm.db._routing"):
            # the lag passes 0.5 s while replay stands still and writes go on
            while not listed(client, name):
                create(client, f"Filler{uuid.uuid4().hex[:6]}")
                assert time.monotonic() < deadline, "the list never came from the primary"
                time.sleep(0.05)  # polling a condition under a deadline
        assert any(
            "reads go to the primary" in r.getMessage()
            and "AICRM_READ_MAX_LAG=0.5" in r.getMessage()
            for r in caplog.records
        )
    finally:
        standby.replay(True)
        replica_api.router.bound = 3600.0
    standby.wait_replayed()


def test_a_stopped_replica_sends_reads_to_the_primary(
    replica_api: ReplicaApi, caplog: pytest.LogCaptureFixture
) -> None:
    client, standby = replica_api.client, replica_api.replicated
    deadline = time.monotonic() + 60
    while not replica_api.router.use_replica():  # the replica caught up: in use
        assert time.monotonic() < deadline
        time.sleep(0.05)  # polling a condition under a deadline
    standby.stop()
    try:
        name = f"Down{uuid.uuid4().hex[:6]}"
        with caplog.at_level(logging.WARNING, logger="aicrm.db._routing"):
            create(client, name)
            assert listed(client, name)  # from the primary
            for path in ("/api/reports/status-funnel", "/api/reports/conversion-summary"):
                assert client.get(path).status_code == 200
        assert any("cannot be reached" in r.getMessage() for r in caplog.records)
    finally:
        standby.start()
    standby.wait_replayed()
    deadline = time.monotonic() + 60
    while not replica_api.router.use_replica():  # back to the replica once it streams
        assert time.monotonic() < deadline
        time.sleep(0.05)  # polling a condition under a deadline
    assert listed(client, name)


def test_cli_lists_read_the_replica_and_fall_back_with_a_warning(replica_api: ReplicaApi) -> None:
    client, standby = replica_api.client, replica_api.replicated
    standby.wait_replayed()
    standby.replay(False)
    try:
        name = f"Cli{uuid.uuid4().hex[:6]}"
        create(client, name)
        fresh = run_cli("leads", "list", "--search", name, "--json", env=replica_api.env,
                        cwd=replica_api.workdir)  # fmt: skip
        assert fresh.returncode == 0, fresh.stderr
        assert fresh.stdout.count(name) == 0  # the replica, bounded by AICRM_READ_MAX_LAG
        strict = run_cli("leads", "list", "--search", name, "--json", cwd=replica_api.workdir,
                         env={**replica_api.env, "AICRM_READ_MAX_LAG": "0"})  # fmt: skip
        assert strict.returncode == 0, strict.stderr
        assert name in strict.stdout  # lagging more than 0 s: the primary, and it says so
        assert (
            "reads go to the primary" in strict.stderr and "AICRM_READ_MAX_LAG=0" in strict.stderr
        )
    finally:
        standby.replay(True)
    standby.wait_replayed()


def test_mcp_searches_read_the_replica_and_check_the_key_on_the_primary(
    replica_api: ReplicaApi,
) -> None:
    where = target(config.resolve(replica_api.env))
    with psycopg.connect(where.conninfo) as conn:
        key, token = apikeys.create_key(conn, f"mcp-{uuid.uuid4().hex[:6]}", "read")
        conn.commit()
    replica_api.replicated.wait_replayed()
    backend = Backend(where, token)
    try:
        with backend.call("read", lagging_ok=True) as (conn, found):
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            assert found.name == key.name
        with backend.call("read") as (conn, _):  # a record by id: the primary
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        with psycopg.connect(where.conninfo) as conn:
            apikeys.revoke_key(conn, key.name)
            conn.commit()
        with pytest.raises(Unauthorized), backend.call("read", lagging_ok=True):
            pass  # revoked on the primary: refused at once, whatever the replica says
    finally:
        backend.close()


def test_scoring_reads_the_features_on_the_replica(replica_api: ReplicaApi) -> None:
    from aicrm.ai import scoring

    client, standby = replica_api.client, replica_api.replicated
    replica_api.router.bound = 3600.0
    source = f"rs{uuid.uuid4().hex[:6]}"
    made = [client.post("/api/leads", json={"first_name": f"S{n}", "source": source}).json()["id"]
            for n in range(4)]  # fmt: skip
    with psycopg.connect(replica_api.env["DATABASE_URL"]) as conn:
        conn.execute(  # old enough to be examples: a prior model
            "UPDATE leads SET created_at = now() - interval '200 days' WHERE source = %s",
            (source,),
        )
        scoring.train(conn, actor="trainer")
        conn.commit()
    standby.wait_replayed()
    standby.replay(False)
    try:
        late = create(client, f"Late{uuid.uuid4().hex[:6]}")
        scored = client.post("/api/scores", json={})
        assert scored.status_code == 200, scored.text
        # the features came from the replica, which has not replayed the late lead yet
        assert client.get(f"/api/leads/{late}").json()["ai_score"] is None
        assert all(client.get(f"/api/leads/{i}").json()["ai_score"] is not None for i in made)
        named = client.post("/api/scores", json={"lead_ids": [late]})  # read on the primary
        assert named.status_code == 200 and named.json()["scored"] == 1, named.text
    finally:
        standby.replay(True)
    standby.wait_replayed()
