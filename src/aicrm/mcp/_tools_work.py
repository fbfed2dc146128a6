"""The MCP tools of a salesperson's daily work: update a lead's fields and status, log
an activity, complete a task, reassign a lead or client, list my open tasks.

Registered beside :mod:`aicrm.mcp._tools` by :func:`aicrm.mcp._server.build_server`,
with the same error handling (one-line tool errors) and the same scopes: the tools
that change data need a write key (a read key is refused with the scope's one-line
message before anything is written); ``my_open_tasks`` reads, for the user the key
belongs to (``aicrm apikey create NAME --user EMAIL``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from aicrm import apikeys
from aicrm.crm import activities, leads, session, users
from aicrm.errors import InvalidInput, NotFound
from aicrm.mcp import _tools as tools
from aicrm.mcp._backend import Calls

P = ParamSpec("P")
T = TypeVar("T")
Clearable = Literal["first_name", "last_name", "email", "company_name", "source"]
Kind = Literal["note", "call", "email", "meeting", "task"]
Owned = Literal["lead", "client"]
Optional = Annotated[str | None, Field(description="A lead's, client's or contact's id.")]


def parse_time(value: str | None, name: str, hint: str) -> datetime | None:
    """``value`` (ISO 8601 with a time zone) as a time; None when not given.

    Raises :class:`InvalidInput` naming ``name`` (and what to pass: ``hint``) otherwise."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} {value!r} is not a time; {hint}.") from None
    if when.tzinfo is None:
        raise InvalidInput(f"{name} {value!r} has no time zone; {hint}.")
    return when


def expected_version(value: str | None) -> datetime | None:
    """The ``updated_at`` a caller read (ISO 8601, as tools return it); None when not given.

    Raises :class:`InvalidInput` for text that is not such a time."""
    hint = "pass the lead's updated_at as get_lead returned it"
    return parse_time(value, "expected_updated_at", hint)


def register(server: MCPServer[Any], backend: Calls) -> None:
    """Add the work tools to ``server``, each working through ``backend``."""

    def tool(hints: ToolAnnotations) -> Callable[[Callable[P, T]], Callable[P, T]]:
        def add(fn: Callable[P, T]) -> Callable[P, T]:
            wrapped = tools.tool_errors(fn)
            server.add_tool(wrapped, annotations=hints, structured_output=True)
            return wrapped

        return add

    @tool(tools.CHANGE)
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

    @tool(tools.ADD)
    def log_activity(
        kind: Annotated[Kind, Field(description="What was done; a task is still to do.")],
        subject: Annotated[str, Field(description="One line: what it was about.")],
        lead_id: Optional = None,
        client_id: Optional = None,
        contact_id: Optional = None,
        body: Annotated[
            str | None, Field(description="The details: a call's summary, an email's text…")
        ] = None,
        due_at: Annotated[
            str | None, Field(description="A task's due time, ISO 8601 with a time zone.")
        ] = None,
        assignee: Annotated[
            str | None, Field(description="A task's assignee: a user's email or id.")
        ] = None,
        attributes: Annotated[
            dict[str, Any] | None, Field(description="Extra facts as a JSON object.")
        ] = None,
    ) -> dict[str, Any]:
        """Log a note, call, email or meeting that happened, or a task to do, on exactly
        one lead, client or contact. Writes one new activity, authored by this key's
        name. Only a task has a due time and an assignee."""
        with backend.call("write") as (conn, key), session.transaction(conn, key.name):
            return activities.add_activity(
                conn, kind=kind, subject=subject, lead_id=lead_id, client_id=client_id,
                contact_id=contact_id, body=body, assignee=assignee, attributes=attributes,
                due_at=parse_time(due_at, "due_at", "pass e.g. 2026-12-24T09:00:00+00:00"),
            ).to_dict()  # fmt: skip

    @tool(tools.CHANGE)
    def complete_task(activity_id: tools.Id) -> dict[str, Any]:
        """Mark a task done, now. Completing it again changes nothing (it keeps the time
        it was first done). Refused for an activity that is not a task."""
        with backend.call("write") as (conn, key), session.transaction(conn, key.name):
            return activities.complete_task(conn, activity_id).to_dict()

    @tool(tools.CHANGE)
    def reassign(
        record_type: Annotated[Owned, Field(description="A lead or a client.")],
        record_id: tools.Id,
        owner: Annotated[
            str | None,
            Field(description="The new owner: an active user's email or id; null: nobody."),
        ],
    ) -> dict[str, Any]:
        """Give a lead or client to another owner (or to nobody). The history records
        the change of owner under this key's name. Refused for a converted lead (its
        client carries the owner) and for a deactivated user."""
        with backend.call("write") as (conn, key), session.transaction(conn, key.name):
            return users.assign(conn, f"{record_type}s", record_id, owner).to_dict()

    @tool(tools.READ)
    def my_open_tasks(
        limit: Annotated[int, Field(ge=1, le=1000, description="How many tasks.")] = 100,
    ) -> dict[str, Any]:
        """The open tasks assigned to the user this API key belongs to, soonest due
        first (tasks without a due time last). Changes nothing."""
        with backend.call("read") as (conn, key):
            user_id = apikeys.user_of(conn, key)
            if user_id is None:
                raise NotFound(
                    f"The API key {key.name} belongs to no user, so it has no tasks. Create "
                    "a key for a user: 'aicrm apikey create NAME --user EMAIL'."
                )
            user = users.get_user(conn, user_id)
            tasks = activities.open_tasks(conn, user.id, limit=limit)
            return {"user": user.to_dict(), "tasks": [task.to_dict() for task in tasks]}
