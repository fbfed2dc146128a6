"""Reads of one record by id, coalesced: the requests that reach the database in the
same turn of the event loop share one statement and one round trip.

Why: a read by id is the API's hot path, and a round trip through async psycopg
(sending, waking up for the answer, decoding) costs the worker more CPU than the
rest of the request. Under load a worker has many such requests in flight at once;
asking for all of them in one statement (``unnest`` of the ids and the keys'
prefixes, joined to ``api_keys`` and the table) costs about what asking for one
does. Each request still gets its own key check and the record as committed when
the statement ran, which starts after the request arrived: a batch adds no
staleness. A lone request goes out alone, one loop turn later.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

Row = tuple[Any, ...]
Pool = AsyncConnectionPool[AsyncConnection[Row]]


def statement(table: str, keys: sql.Composable, record: sql.Composable) -> bytes:
    """One row per asked (id, prefix), in the order asked: the key's columns (NULL when
    no key has that prefix), then the record's (NULL when there is none)."""
    return (
        sql.SQL(
            "SELECT {keys}, {record} "
            "FROM unnest(%s::uuid[], %s::text[]) WITH ORDINALITY AS q(id, prefix, n) "
            "LEFT JOIN api_keys k ON k.prefix = q.prefix "
            "LEFT JOIN {table} r ON r.id = q.id ORDER BY q.n"
        )
        .format(keys=keys, record=record, table=sql.Identifier(table))
        .as_bytes(None)
    )


class Batcher:
    """Collects ``(id, prefix)`` reads of one table; sends each turn's as one statement
    (:func:`statement`) on a connection of ``pool``, waiting at most ``timeout`` seconds
    for one (the pool's error is then every request's)."""

    def __init__(self, pool: Pool, query: bytes, timeout: float) -> None:
        self.pool = pool
        self.query = query
        self.timeout = timeout
        self.pending: list[tuple[uuid.UUID, str, asyncio.Future[Row]]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def read(self, record_id: uuid.UUID, prefix: str) -> Row:
        return await self.submit(record_id, prefix)

    def submit(self, record_id: uuid.UUID, prefix: str) -> asyncio.Future[Row]:
        """Queue a read for this turn's batch; its row, when the batch is answered."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Row] = loop.create_future()
        self.pending.append((record_id, prefix, future))
        if len(self.pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self.tasks.add(task)  # a reference until it ends (the loop keeps only a weak one)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, batch: list[tuple[uuid.UUID, str, asyncio.Future[Row]]]) -> None:
        try:
            async with self.pool.connection(timeout=self.timeout) as conn:
                cursor = conn.cursor(binary=True)
                await cursor.execute(
                    self.query, ([item[0] for item in batch], [item[1] for item in batch])
                )
                rows = await cursor.fetchall()
        except Exception as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the server shuts down): so are the requests
            for *_, future in batch:
                future.cancel()
            raise
        for (*_, future), row in zip(batch, rows, strict=True):
            if not future.done():  # a request given up meanwhile (client gone)
                future.set_result(row)
