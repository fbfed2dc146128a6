"""The MCP server (``aicrm mcp``): the CRM's tools for AI assistants, over stdio."""

from aicrm.mcp._backend import Backend
from aicrm.mcp._server import build_server, serve

__all__ = ["Backend", "build_server", "serve"]
