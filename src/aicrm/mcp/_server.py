"""The MCP server (``aicrm mcp``): the CRM's tools for AI assistants, over stdio.

It runs under one API key: checked at start-up (a wrong key exits before any
protocol) and on every call, with its scope. The history records the key's name as
the actor. A failure comes back as a tool error with aicrm's one-line message, never
a traceback; stdout carries nothing but the protocol.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from aicrm import __version__
from aicrm.db import Target, target
from aicrm.errors import UsageError
from aicrm.mcp import _tools as tools, _tools_work as tools_work
from aicrm.mcp._backend import CALLER, Backend, Calls

INSTRUCTIONS = (
    "aicrm is a CRM: leads (prospects) convert into clients; contacts belong to a lead or a "
    "client. Search first, then read a record by its id (a UUID). Converting a lead is "
    "permanent. Tools that change data need an API key with the write scope."
)


class _Server(MCPServer[Any]):
    """The SDK's server, with arguments that fail validation reported in one line
    (``field: problem``) like every other tool error, not pydantic's multi-line text."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        CALLER.set(caller_token(context))  # over HTTP: the key of this call's request
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in cause.errors()
            )
            message = f"Error executing tool {name}: invalid arguments: {problems}."
            raise ToolError(message) from cause


def caller_token(context: Context[Any, Any] | None) -> str | None:
    """The API key the HTTP request of a tool call presents (``Authorization: Bearer``
    or ``X-API-Key``); None over stdio, where the server's own key applies."""
    try:
        request = context.request_context.request if context is not None else None
    except ValueError:  # no request: a call from inside the process
        return None
    headers = getattr(request, "headers", None)
    if headers is None:
        return None
    header = str(headers.get("authorization", ""))
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    found = headers.get("x-api-key")
    return str(found).strip() if found else ""


def build_server(backend: Calls) -> MCPServer[Any]:
    """The MCP server with aicrm's tools, working through ``backend``."""
    server = _Server("aicrm", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    tools.register(server, backend)
    tools_work.register(server, backend)
    return server


def serve(token: str | None, where: Target | None = None) -> None:
    """Serve the tools on stdin/stdout until the client closes them.

    Raises :class:`UsageError` without a key and :class:`aicrm.errors.Unauthorized`
    for a key that is not valid, before serving anything.
    """
    if not token:
        raise UsageError(
            "The MCP server needs an API key: set AICRM_API_KEY (or pass --api-key). Create "
            "one with 'aicrm apikey create NAME --scope read' (or write, to change data)."
        )
    backend = Backend(where or target(), token.strip())
    with backend.call("read"):
        pass  # a wrong key fails now, with its one-line message, not at the first call
    try:
        build_server(backend).run("stdio")
    finally:
        backend.close()
