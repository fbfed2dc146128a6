"""Two real ``aicrm serve`` processes on one database: nothing in a worker's memory
makes them disagree. A revoked key is refused by both at once (every request checks
the key on the primary: the bound is zero), ETags and If-Match hold across them, and
both explain with the model that is active now, whoever activated it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from aicrm.ai import scoring
from tests.ai.data import AS_OF, L, insert
from tests.conftest import Database

pytestmark = pytest.mark.slow

START_TIMEOUT = 60.0  # seconds for an instance to answer /api/ping


@dataclass
class Instance:
    process: subprocess.Popen[str]
    url: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(db: Database) -> Instance:
    """Start ``aicrm serve`` on a free port; wait (bounded) until it answers."""
    for _attempt in range(3):  # another process may take the free port first
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "aicrm", "serve", "--port", str(port)],
            env=db.env,
            cwd=db.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/ping", timeout=2).status_code == 200:
                    return Instance(process, url)
            except httpx.TransportError:
                time.sleep(0.1)  # polling a condition under a deadline
        stop(Instance(process, url))
    pytest.fail("aicrm serve did not start")


def stop(instance: Instance) -> None:
    if instance.process.poll() is None:
        instance.process.terminate()
        try:
            instance.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            instance.process.kill()
            instance.process.wait(timeout=30)


@pytest.fixture
def two(crm_db: Database) -> Iterator[tuple[Instance, Instance]]:
    first, second = serve(crm_db), serve(crm_db)
    try:
        yield first, second
    finally:
        stop(first)
        stop(second)


def token(db: Database, name: str, scope: str) -> str:
    made = db.cli("apikey", "create", name, "--scope", scope)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1].split()[-1]


def client(instance: Instance, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=instance.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def test_a_revoked_key_is_refused_by_every_instance_at_once(
    crm_db: Database, two: tuple[Instance, Instance]
) -> None:
    admin, doomed = token(crm_db, "admin-x", "admin"), token(crm_db, "doomed", "write")
    with client(two[0], doomed) as a, client(two[1], doomed) as b, client(two[0], admin) as root:
        lead = a.post("/api/leads", json={"first_name": "Ann"}).json()["id"]
        for api in (a, b):
            assert api.get(f"/api/leads/{lead}").status_code == 200
            assert api.get("/api/leads").status_code == 200
        assert root.delete("/api/keys/doomed").status_code == 200
        # no cache anywhere: the very next request, on either instance, is refused
        for api in (b, a):
            assert api.get(f"/api/leads/{lead}").status_code == 401  # the batched hot path
            assert api.get("/api/leads").status_code == 401
            assert api.patch(f"/api/leads/{lead}", json={"last_name": "X"}).status_code == 401


def test_etags_and_if_match_hold_across_instances(
    crm_db: Database, two: tuple[Instance, Instance]
) -> None:
    key = token(crm_db, "writer", "write")
    with client(two[0], key) as a, client(two[1], key) as b:
        made = a.post("/api/leads", json={"first_name": "Bea"})
        lead, tag = made.json()["id"], made.headers["etag"]
        assert b.get(f"/api/leads/{lead}").headers["etag"] == tag
        assert b.get(f"/api/leads/{lead}", headers={"If-None-Match": tag}).status_code == 304
        changed = b.patch(f"/api/leads/{lead}", json={"last_name": "B"}, headers={"If-Match": tag})
        assert changed.status_code == 200, changed.text
        stale = a.patch(f"/api/leads/{lead}", json={"last_name": "A"}, headers={"If-Match": tag})
        assert stale.status_code == 412, stale.text
        fresh = a.get(f"/api/leads/{lead}")
        assert fresh.headers["etag"] == changed.headers["etag"]
        assert fresh.json()["last_name"] == "B"


def test_every_instance_explains_with_the_model_active_now(
    crm_db: Database, two: tuple[Instance, Instance]
) -> None:
    leads = [
        L(("web", "referral")[i % 2], age=100 + i, converted=20 if i % 3 == 0 else None)
        for i in range(60)
    ]
    with crm_db.connect() as conn:
        insert(conn, leads)
        first = scoring.train(conn, as_of=AS_OF)
    key = token(crm_db, "reader", "read")
    lead = str(leads[1].id)
    with client(two[0], key) as a, client(two[1], key) as b:
        for api in (a, b):
            got = api.get(f"/api/leads/{lead}/explanation")
            assert got.status_code == 200, got.text
            assert got.json()["model_version"] == first.model.version
        with crm_db.connect() as conn:  # another process trains and activates a new one
            second = scoring.train(conn, as_of=AS_OF, force_prior=True)
        assert second.model.version != first.model.version
        for api in (b, a):
            assert api.get(f"/api/leads/{lead}/explanation").json()["model_version"] == (
                second.model.version
            )
