"""The FastAPI application: the API under /api, the dashboard at /."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from aicrm import __version__
from aicrm.api import problems
from aicrm.api.routes import leads
from aicrm.db import Connection, Target, target
from aicrm.web import pages


def create_app(where: Target | None = None, *, pool_size: int = 10) -> FastAPI:
    """Build the app for a database (default: the configured one)."""
    where = where or target()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: ConnectionPool[Connection] = ConnectionPool(
            where.conninfo,
            min_size=2,
            max_size=pool_size,
            kwargs={"application_name": "aicrm api"},
            open=False,
        )
        pool.open(wait=True, timeout=30)
        app.state.pool = pool
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="aicrm",
        version=__version__,
        description="An AI-centric CRM on PostgreSQL. Authenticate with "
        "`Authorization: Bearer <API key>` (create one with `aicrm apikey create`).",
        lifespan=lifespan,
    )
    app.state.database = where.describe()
    problems.install(app)
    app.include_router(leads.router, prefix="/api")
    app.include_router(pages.router)
    return app
