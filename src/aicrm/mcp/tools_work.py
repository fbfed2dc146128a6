"""The MCP tools of a salesperson's daily work: update a lead's fields and status.

Registered beside :mod:`aicrm.mcp.tools` by :func:`aicrm.mcp.server.build_server`,
with the same error handling (one-line tool errors) and the same scopes: every tool
here changes data, so each needs a write key; a read key is refused with the scope's
one-line message before anything is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from aicrm.crm import leads, session
from aicrm.errors import InvalidInput
from aicrm.mcp import tools
from aicrm.mcp.backend import Calls

Clearable = Literal["first_name", "last_name", "email", "company_name", "source"]


def expected_version(value: str | None) -> datetime | None:
    """The ``updated_at`` a caller read (ISO 8601, as tools return it); None when not given.

    Raises :class:`InvalidInput` for text that is not such a time."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"expected_updated_at {value!r} is not a time; pass the lead's updated_at as "
            "get_lead returned it."
        ) from None
    if when.tzinfo is None:
        raise InvalidInput(
            f"expected_updated_at {value!r} has no time zone; pass the lead's updated_at "
            "as get_lead returned it."
        )
    return when


def register(server: MCPServer[Any], backend: Calls) -> None:
    """Add the work tools to ``server``, each working through ``backend``."""

    def tool(fn: Any) -> Any:
        wrapped = tools._tool_errors(fn)
        server.add_tool(wrapped, annotations=tools.CHANGE, structured_output=True)
        return wrapped

    @tool
    def update_lead(
        lead_id: tools.Id,
        first_name: str | None = None,
        last_name: str | None = None,
        email: str | None = None,
        company_name: str | None = None,
        source: str | None = None,
        status: Annotated[
            str | None,
            Field(
                description="new, contacted, qualified, unqualified, lost, or a status the "
                "CRM added (lead_statuses). Converting is convert_lead's job."
            ),
        ] = None,
        attributes: Annotated[
            dict[str, Any] | None,
            Field(description="Replaces the lead's extra facts (a JSON object) as a whole."),
        ] = None,
        clear: Annotated[
            list[Clearable] | None, Field(description="Fields to empty (set to null).")
        ] = None,
        expected_updated_at: Annotated[
            str | None,
            Field(
                description="The lead's updated_at as you read it: the change is refused if "
                "someone changed the lead since (read it again, then reapply)."
            ),
        ] = None,
        allow_duplicate: Annotated[
            bool, Field(description="Accept an email that other leads or contacts already have.")
        ] = False,
    ) -> dict[str, Any]:
        """Change a lead's fields and status. Writes only the fields given (and empties
        those in clear); the history records the change under this key's name. Refused
        for a converted lead (read-only), a status the CRM does not know, an email that
        belongs to other records (unless allow_duplicate), and, with
        expected_updated_at, when the lead changed since it was read."""
        changes: dict[str, Any] = {
            name: value
            for name, value in {
                "first_name": first_name, "last_name": last_name, "email": email,
                "company_name": company_name, "source": source, "status": status,
                "attributes": attributes,
            }.items()
            if value is not None
        }  # fmt: skip
        with backend.call("write") as (conn, key), session.transaction(conn, key.name):
            both = sorted(set(changes) & set(clear or []))
            if both:
                raise InvalidInput(f"{', '.join(both)}: given a value and in clear; pick one.")
            changes |= dict.fromkeys(clear or [])
            if not changes:
                raise InvalidInput("Nothing to change: give at least one field, or clear one.")
            return leads.update_lead(
                conn,
                lead_id,
                changes,
                allow_duplicate=allow_duplicate,
                expected_updated_at=expected_version(expected_updated_at),
            ).to_dict()
