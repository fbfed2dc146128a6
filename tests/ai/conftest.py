"""Fixtures of the AI tests: a generated CRM with a trained model, cloned per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ai.data import AS_OF, generated
from tests.conftest import Database, Server, clean_env, create_database, drop_database

GENERATED_LEADS = 2500


def _database(server: Server, name: str, tmp_path: Path) -> Database:
    home = tmp_path / f"home-{name}"
    home.mkdir()
    url = server.conninfo(name)
    env = clean_env(DATABASE_URL=url, AICRM_HOME=str(home), BACKUP_DIR=str(tmp_path / "backups"))
    return Database(name, url, server, tmp_path, env)


@pytest.fixture(scope="module")
def trained_template(
    server: Server, head_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database with a generated CRM (history up to AS_OF) and an active model."""
    from aicrm.ai import scoring

    name = create_database(server, f"aicrm_ai_{uuid.uuid4().hex[:10]}", template=head_template)
    db = _database(server, name, tmp_path_factory.mktemp("ai"))
    generated(db, GENERATED_LEADS, seed=7)
    with db.connect() as conn:
        scoring.train(conn, as_of=AS_OF, actor="test")
    yield name
    drop_database(server, name)


@pytest.fixture
def trained_db(server: Server, trained_template: str, tmp_path: Path) -> Iterator[Database]:
    name = create_database(server, template=trained_template)
    yield _database(server, name, tmp_path)
    drop_database(server, name)
