"""``aicrm mcp``: the MCP server for AI assistants, on stdin/stdout."""

from __future__ import annotations

from typing import Annotated

import typer


def mcp(
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="AICRM_API_KEY",
            show_default=False,
            help="The API key the tools run under (better: the AICRM_API_KEY variable, "
            "which other users cannot see in the process list).",
        ),
    ] = None,
) -> None:
    """Serve the CRM's tools to an AI assistant over MCP (stdio).

    The key's scope applies: read to search and read, write to change data.
    Changes are recorded in the history under the key's name.
    """
    from aicrm.cli._common import database
    from aicrm.mcp import serve

    with database():  # an unmigrated database: one line and exit 2, before any protocol
        pass
    serve(api_key)
