"""Fixtures for the engine's tests: a real PgBouncer in front of the test server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Server
from tests.pgbouncer import start


@pytest.fixture
def pgbouncer(server: Server) -> Iterator[str]:
    """The conninfo of a transaction-pooling PgBouncer (pool of 4 server connections
    per database and user) in front of the test server, one for each test."""
    bouncer = start(server.admin)
    try:
        yield bouncer.conninfo("postgres")
    finally:
        bouncer.stop()
