"""``aicrm serve``: the REST API and the web dashboard."""

from __future__ import annotations

from typing import Annotated

import typer

from aicrm.cli import output


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Worker processes.")] = 1,
) -> None:
    """Serve the REST API (/api, OpenAPI at /docs) and the dashboard (/)."""
    import uvicorn

    from aicrm.cli.common import database
    from aicrm.db import target

    where = target()
    # Before serving: an unreachable or unmigrated database is one line and exit 2,
    # not half a minute of pool errors and a traceback.
    with database():
        pass
    output.stderr.print(
        f"serving {where.describe()} on http://{host}:{port}/ (API docs at /docs)", markup=False
    )
    uvicorn.run(
        "aicrm.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        factory=False,
    )
