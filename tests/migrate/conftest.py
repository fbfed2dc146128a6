"""Fixtures for the engine's tests: a real PgBouncer in front of the test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.pgbouncer import available, start_pgbouncer


@pytest.fixture
def pgbouncer(server: Server, tmp_path: Path) -> Iterator[str]:
    """The conninfo of a transaction-pooling PgBouncer (pool of 4 server
    connections per database and user) in front of the test server."""
    if not available():
        pytest.fail("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    conninfo, stop = start_pgbouncer(server.admin, tmp_path / "pgbouncer")
    try:
        yield conninfo
    finally:
        stop()
