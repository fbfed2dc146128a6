"""``aicrm serve``: the REST API and the web dashboard."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated

import typer

from aicrm.cli import _output as output

if TYPE_CHECKING:
    from aicrm.db import Target


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Worker processes.")] = 1,
    webhooks: Annotated[
        bool, typer.Option("--webhooks", help="Also deliver webhooks (aicrm webhooks run).")
    ] = False,
) -> None:
    """Serve the REST API (/api, OpenAPI at /docs) and the dashboard (/)."""
    import uvicorn

    from aicrm.cli._common import database
    from aicrm.db import target

    where = target()
    # Before serving: an unreachable or unmigrated database is one line and exit 2,
    # not half a minute of pool errors and a traceback.
    with database():
        pass
    output.stderr.print(
        f"serving {where.describe()} on http://{host}:{port}/ (API docs at /docs)", markup=False
    )
    stop = _deliver_webhooks(where) if webhooks else None
    try:
        uvicorn.run(
            "aicrm.asgi:app",
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            factory=False,
        )
    finally:
        if stop is not None:
            stop.set()


def _deliver_webhooks(where: Target) -> threading.Event:
    """The webhook worker on a thread of this process, with its default settings."""
    from aicrm.events.worker import Worker

    stop = threading.Event()
    worker = Worker(
        where, log=lambda line: output.stderr.print(output.printable(line), markup=False)
    )

    def deliver() -> None:
        while not stop.is_set():
            try:
                worker.run(stop)
            except Exception as exc:  # the database went away: say so, try again
                output.stderr.print(
                    output.printable(f"webhooks: {type(exc).__name__}: {exc}; retrying in 5 s"),
                    markup=False,
                )
                stop.wait(5)

    threading.Thread(target=deliver, name="aicrm-webhooks", daemon=True).start()
    output.stderr.print("delivering webhooks beside the API", markup=False)
    return stop
