"""``aicrm ai score`` reads the leads' features on the read replica (AICRM_READ_URL)
and writes the scores on the primary; a stopped replica sends the read to the primary.

Replay paused on a real streaming standby (tests/standby.py) makes the proof
deterministic: a lead inserted on the primary afterwards exists only there, so a
scoring that read the replica leaves it unscored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from aicrm import config
from aicrm.ai import scoring
from aicrm.crm.leads import create_lead
from aicrm.db import target
from aicrm.migrate import Options, migrate
from tests.ai.data import AS_OF, generated
from tests.conftest import Database, Server, clean_env, head_migrations, run_cli
from tests.standby import Replicated, replicated  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

OPEN_LEADS = (  # open: not converted, not lost
    "SELECT count(*) FROM leads WHERE status IN "
    "(SELECT name FROM lead_statuses WHERE category = 'open')"
)
UNSCORED = (
    "SELECT id FROM leads WHERE ai_score IS NULL AND status IN "
    "(SELECT name FROM lead_statuses WHERE category = 'open')"
)
CLEAR_SCORES = "UPDATE leads SET ai_score = NULL"


@dataclass
class Crm:
    db: Database
    env: dict[str, str]  # with AICRM_READ_URL: the standby


@pytest.fixture
def crm(replicated: Replicated, tmp_path: Path) -> Iterator[Crm]:  # noqa: F811
    """A migrated CRM with generated leads and an active model on the replicated
    primary, replayed on the standby."""
    name = f"aicrm_rs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(replicated.primary(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(DATABASE_URL=replicated.primary(name), AICRM_HOME=str(home))
    where = target(config.resolve(env))
    migrate(Options(backup_dir=home / "backups", migrations_dir=head_migrations()), where)
    db = Database(name, replicated.primary(name), Server(replicated.primary(), None), tmp_path, env)
    generated(db, 300, seed=3)
    with db.connect() as conn:
        scoring.train(conn, as_of=AS_OF, force_prior=True, actor="test")
        conn.execute(CLEAR_SCORES)
        conn.commit()
    replicated.wait_replayed()
    read = {"AICRM_READ_URL": replicated.standby(name), "AICRM_READ_MAX_LAG": "3600"}
    try:
        yield Crm(db, {**env, **read})
    finally:
        with psycopg.connect(replicated.primary(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def score(crm: Crm, *args: str) -> tuple[int, str]:
    done = run_cli("ai", "score", "--json", *args, env=crm.env, cwd=crm.db.workdir)
    assert done.returncode == 0, done.stderr
    scored: int = json.loads(done.stdout)["scored"]
    return scored, done.stderr


def test_scoring_reads_the_replica_and_writes_the_primary(
    replicated: Replicated,  # noqa: F811
    crm: Crm,
) -> None:
    replicated.replay(False)
    try:
        with crm.db.connect() as conn:
            new = str(create_lead(conn, first_name="Only", last_name="OnThePrimary").id)
            conn.commit()
        everyone = crm.db.scalar(OPEN_LEADS)
        scored, _ = score(crm)
        # the replica has every lead but the new one: read there, written here
        assert scored == everyone - 1
        assert [str(row[0]) for row in crm.db.execute(UNSCORED)] == [new]
        # a lead named by id is read on the primary: the caller may just have written it
        assert score(crm, "--lead", new)[0] == 1
        assert crm.db.execute(UNSCORED) == []
    finally:
        replicated.replay(True)
    replicated.wait_replayed()


def test_a_stopped_replica_sends_the_read_to_the_primary(
    replicated: Replicated,  # noqa: F811
    crm: Crm,
) -> None:
    replicated.replay(False)
    with crm.db.connect() as conn:
        create_lead(conn, first_name="Also", last_name="OnThePrimary")
        conn.commit()
    replicated.stop()
    try:
        scored, stderr = score(crm)
        assert scored == crm.db.scalar(OPEN_LEADS)  # the new lead too: read on the primary
        assert crm.db.execute(UNSCORED) == []
        assert "reads go to the primary" in stderr and "cannot be reached" in stderr
    finally:
        replicated.start()  # a restarted standby replays again
    replicated.wait_replayed()
