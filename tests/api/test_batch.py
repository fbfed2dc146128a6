"""Reads by id coalesced per event-loop turn (aicrm.api._batch), against a real database:
each request gets its own row (key and record) in the order asked, one connection is
taken per batch, a failure reaches every request of its batch, and a request given up
before its batch is answered leaves the others alone."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from aicrm import apikeys
from aicrm.api import _batch as batch
from aicrm.api._reads import KEY_COLUMNS, read_statement
from aicrm.crm.records import Lead
from tests.conftest import Database


async def _pool(db: Database) -> AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]:
    pool: AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]] = AsyncConnectionPool(
        db.url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True, timeout=30)
    return pool


def test_a_turn_of_reads_is_one_statement_with_each_row_in_its_place(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        reader, _ = apikeys.create_key(conn, "reader", "read")
        other, _ = apikeys.create_key(conn, "other", "write")
        conn.commit()
    leads = [
        crm_db.scalar("INSERT INTO leads (first_name) VALUES (%s) RETURNING id", (name,))
        for name in ("Ada", "Grace", "Edsger")
    ]
    missing = uuid.uuid4()
    asked = [
        (leads[0], reader.prefix),
        (missing, reader.prefix),
        (leads[1], "nosuchprefix"),
        (leads[2], other.prefix),
        (leads[0], other.prefix),
    ]

    async def scenario() -> tuple[list[tuple[Any, ...]], int]:
        pool = await _pool(crm_db)
        try:
            reads = batch.Batcher(pool, read_statement(Lead), timeout=10)
            before = pool.get_stats().get("requests_num", 0)
            rows = await asyncio.gather(*(reads.read(i, p) for i, p in asked))
            return rows, pool.get_stats().get("requests_num", 0) - before
        finally:
            await pool.close()

    rows, connections = asyncio.run(scenario())
    assert connections == 1
    width = len(KEY_COLUMNS)
    names = [(row[1], row[width + 1]) for row in rows]  # key name, lead first_name
    assert names == [("reader", "Ada"), ("reader", None), (None, "Grace"), ("other", "Edsger"),
                     ("other", "Ada")]  # fmt: skip
    assert rows[1][width] is None  # no such lead: its columns are NULL
    assert rows[2][0] is None  # no such key: its columns are NULL


def test_a_failed_batch_fails_each_of_its_reads_and_a_given_up_read_spares_the_rest(
    crm_db: Database,
) -> None:
    lead = crm_db.scalar("INSERT INTO leads (first_name) VALUES ('Ada') RETURNING id")

    async def scenario() -> None:
        pool = await _pool(crm_db)
        try:
            query = b"SELECT * FROM no_such_table WHERE %s::uuid[] IS NULL OR %s::text[] IS NULL"
            broken = batch.Batcher(pool, query, timeout=10)
            outcomes = await asyncio.gather(
                broken.read(lead, "x"), broken.read(lead, "y"), return_exceptions=True
            )
            assert all(isinstance(o, psycopg.errors.UndefinedTable) for o in outcomes)

            reads = batch.Batcher(pool, read_statement(Lead), timeout=10)
            abandoned = reads.submit(lead, "x")
            kept = reads.submit(lead, "y")  # both in this turn's batch
            abandoned.cancel()
            row = await kept
            assert row[len(KEY_COLUMNS) + 1] == "Ada"
            assert abandoned.cancelled() and not reads.pending
        finally:
            await pool.close()

    asyncio.run(scenario())
