"""The MCP tools: search and read leads, clients and contacts; create, convert, merge
and annotate; delete a client or a contact; the conversion summary; a score's
explanation.

Each tool's description says what it does and what it changes; its annotations say
the same to clients that read hints. ``read`` tools need a read key, the others a
write key. A failure becomes a tool error with aicrm's one-line message.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from aicrm.ai import scoring
from aicrm.ai.annotations import annotate as write_annotation
from aicrm.crm import clients, contacts, conversion, history, leads, merge, reports, session, store
from aicrm.crm.pagination import Page
from aicrm.errors import AicrmError
from aicrm.mcp._backend import Calls

log = logging.getLogger("aicrm.mcp")

P = ParamSpec("P")
T = TypeVar("T")

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ADD = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
CHANGE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
DESTROY = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

Id = Annotated[str, Field(description="The record's id, a UUID.")]
Search = Annotated[
    str | None,
    Field(description="Full-text search; each word matches a prefix of a name, email or company."),
]
Limit = Annotated[int, Field(ge=1, le=100, description="How many records to return.")]
Cursor = Annotated[
    str | None, Field(description="The next_cursor of a previous call, for the next page.")
]


def tool_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn every failure of ``fn`` into a :class:`ToolError` with one line of text."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except AicrmError as exc:
            raise ToolError(_one_line(exc.message)) from None
        except Exception as exc:
            log.debug("tool %s failed", fn.__name__, exc_info=exc)
            raise ToolError(
                f"Internal error ({type(exc).__name__}): {_one_line(str(exc))}. "
                "This is a bug in aicrm; please report it."
            ) from None

    return run


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _page(page: Page[Any]) -> dict[str, Any]:
    return {"items": [item.to_dict() for item in page.items], "next_cursor": page.next_cursor}


def _dicts(records: list[Any]) -> list[dict[str, Any]]:
    return [record.to_dict() for record in records]


def register(server: MCPServer[Any], backend: Calls) -> None:
    """Add aicrm's tools to ``server``, each working through ``backend``."""

    def tool(hints: ToolAnnotations) -> Callable[[Callable[P, T]], Callable[P, T]]:
        def register(fn: Callable[P, T]) -> Callable[P, T]:
            wrapped = tool_errors(fn)
            server.add_tool(wrapped, annotations=hints, structured_output=True)
            return wrapped

        return register

    @tool(READ)
    def search_leads(
        search: Search = None,
        status: Annotated[
            str | None,
            Field(
                description="new, contacted, qualified, unqualified, lost, converted, or a "
                "status the CRM added (lead_statuses)."
            ),
        ] = None,
        source: Annotated[str | None, Field(description="Where leads came from, e.g. web.")] = None,
        converted: Annotated[
            bool | None, Field(description="Only converted, or only open.")
        ] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """Search leads, newest first, by text, status, source and converted. Changes nothing."""
        with backend.call("read", lagging_ok=True) as (conn, _):
            query = store.Query(search=search, cursor=cursor, limit=limit)
            found = leads.list_leads(
                conn, status=status, source=source, converted=converted, query=query
            )
            return _page(found)

    @tool(READ)
    def get_lead(
        lead_id: Id,
        include_history: Annotated[
            bool, Field(description="Also return the lead's change history, oldest first.")
        ] = False,
    ) -> dict[str, Any]:
        """Read one lead with its contacts (and, if asked, its history). Changes nothing."""
        with backend.call("read") as (conn, _), conn.transaction():
            lead = leads.get_lead(conn, lead_id)
            found: dict[str, Any] = {
                "lead": lead.to_dict(),
                "contacts": _page(contacts.list_contacts(conn, lead_id=lead.id))["items"],
            }
            if include_history:
                found["history"] = _dicts(history.timeline(conn, "leads", lead.id))
            return found

    @tool(READ)
    def search_clients(
        search: Search = None,
        industry: Annotated[str | None, Field(description="Only clients of this industry.")] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """Search clients, newest first, by name or industry. Changes nothing."""
        with backend.call("read", lagging_ok=True) as (conn, _):
            query = store.Query(search=search, cursor=cursor, limit=limit)
            return _page(clients.list_clients(conn, industry=industry, query=query))

    @tool(READ)
    def get_client(client_id: Id) -> dict[str, Any]:
        """Read one client with its contacts and its lead history (the leads converted
        into it, with the days each took). Changes nothing."""
        with backend.call("read") as (conn, _), conn.transaction():
            client = clients.get_client(conn, client_id)
            return {
                "client": client.to_dict(),
                "contacts": _page(contacts.list_contacts(conn, client_id=client.id))["items"],
                "lead_history": _dicts(reports.client_history(conn, client.id)),
            }

    @tool(READ)
    def search_contacts(
        search: Search = None,
        lead_id: Annotated[str | None, Field(description="Only this lead's contacts.")] = None,
        client_id: Annotated[str | None, Field(description="Only this client's contacts.")] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """Search contacts, newest first, by text, lead or client. Changes nothing."""
        with backend.call("read", lagging_ok=True) as (conn, _):
            query = store.Query(search=search, cursor=cursor, limit=limit)
            found = contacts.list_contacts(conn, lead_id=lead_id, client_id=client_id, query=query)
            return _page(found)

    @tool(READ)
    def get_contact(contact_id: Id) -> dict[str, Any]:
        """Read one contact. Changes nothing."""
        with backend.call("read") as (conn, _):
            return contacts.get_contact(conn, contact_id).to_dict()

    @tool(ADD)
    def create_lead(
        first_name: str | None = None,
        last_name: str | None = None,
        email: str | None = None,
        company_name: str | None = None,
        source: str | None = None,
        status: Annotated[
            str | None,
            Field(
                description="new (default), contacted, qualified, unqualified, lost, or a "
                "status the CRM added (lead_statuses)."
            ),
        ] = None,
        attributes: Annotated[
            dict[str, Any] | None, Field(description="Extra facts as a JSON object.")
        ] = None,
        allow_duplicate: Annotated[
            bool, Field(description="Accept an email that other leads or contacts already have.")
        ] = False,
    ) -> dict[str, Any]:
        """Create a lead. Writes one new lead (recorded in the history under this key's
        name). Refused when the email already belongs to a lead or contact, unless
        allow_duplicate; the error names the records in the way."""
        values = {
            name: value
            for name, value in {
                "first_name": first_name, "last_name": last_name, "email": email,
                "company_name": company_name, "source": source, "status": status,
                "attributes": attributes,
            }.items()
            if value is not None
        }  # fmt: skip
        with backend.call("write") as (conn, key), session.transaction(conn, key.name):
            return leads.create_lead(conn, allow_duplicate=allow_duplicate, **values).to_dict()

    @tool(CHANGE)
    def convert_lead(
        lead_id: Id,
        client_id: Annotated[
            str | None, Field(description="Convert into this existing client, not a new one.")
        ] = None,
        overwrite: Annotated[
            bool, Field(description="With client_id: the lead's values replace the client's.")
        ] = False,
        allow_duplicate: Annotated[
            bool, Field(description="Convert even if the email belongs to other records.")
        ] = False,
    ) -> dict[str, Any]:
        """Convert a lead into a client, permanently. Creates the client (or fills the
        one given), marks the lead converted (it becomes read-only but for its ai_*
        fields) and moves its contacts to the client. Converting again returns the
        first conversion and changes nothing. Refused for a duplicate email unless
        allow_duplicate."""
        with backend.call("write") as (conn, key):
            done = conversion.convert_lead(
                conn, lead_id, client_id=client_id, overwrite=overwrite,
                allow_duplicate=allow_duplicate, actor=key.name,
            )  # fmt: skip
            return done.to_dict()

    @tool(DESTROY)
    def merge_leads(
        keep_id: Annotated[str, Field(description="The lead to keep (a UUID).")],
        merge_ids: Annotated[
            list[str], Field(min_length=1, description="The duplicate leads to merge into it.")
        ],
    ) -> dict[str, Any]:
        """Merge duplicate leads into one. Fills the kept lead's empty fields from the
        others, moves their contacts and history to it, then DELETES the others (each
        merge is recorded in lead_merges). Converted leads cannot be merged."""
        with backend.call("write") as (conn, key):
            done = merge.merge_leads(conn, keep_id, merge_ids, actor=key.name)
            return {
                "kept": done.kept.to_dict(),
                "merged": [str(i) for i in done.merged],
                "contacts_moved": done.contacts_moved,
            }

    @tool(DESTROY)
    def delete_client(client_id: Id) -> dict[str, Any]:
        """DELETE a client, for good. Refused when leads were converted into it or it
        has contacts (conversions are permanent): the error names them."""
        with backend.call("write") as (conn, key), session.transaction(conn, key.name):
            return {"deleted": clients.delete_client(conn, client_id).to_dict()}

    @tool(DESTROY)
    def delete_contact(contact_id: Id) -> dict[str, Any]:
        """DELETE a contact, for good (the history keeps its last values)."""
        with backend.call("write") as (conn, key), session.transaction(conn, key.name):
            return {"deleted": contacts.delete_contact(conn, contact_id).to_dict()}

    @tool(CHANGE)
    def annotate(
        record_type: Literal["lead", "client", "contact"],
        record_id: Id,
        annotator: Annotated[
            str,
            Field(description="Whose values these are: lowercase, e.g. email_classifier."),
        ],
        values: Annotated[dict[str, Any], Field(description="The values, a JSON object.")],
        model: Annotated[
            str | None, Field(description="What produced them (default: the annotator).")
        ] = None,
        version: Annotated[str, Field(description="Which version of it.")] = "unversioned",
        confidence: Annotated[
            float | None, Field(ge=0, le=1, description="How sure it is, 0 to 1.")
        ] = None,
        replace: Annotated[
            bool, Field(description="Replace the annotator's earlier values instead of merging.")
        ] = False,
    ) -> dict[str, Any]:
        """Write an annotator's values into a record's ai_annotations. Changes only that
        annotator's entry (its values are merged into the earlier ones unless replace);
        other annotators' entries and every other field stay as they are. Converted
        leads accept annotations too."""
        with backend.call("write") as (conn, key):
            merged = write_annotation(
                conn, f"{record_type}s", record_id, annotator, model=model or annotator,
                version=version, values=values, confidence=confidence, replace=replace,
                actor=key.name,
            )  # fmt: skip
            return {"record_type": record_type, "id": record_id, "ai_annotations": merged}

    @tool(READ)
    def conversion_summary() -> dict[str, Any]:
        """The conversion summary: per source, its leads, converted and open leads,
        conversion rate and mean days to convert; and the status funnel (leads that
        reached each status, the drop-off, the median days in it). Changes nothing."""
        with backend.call("read", lagging_ok=True) as (conn, _), conn.transaction():
            return {
                "sources": _dicts(reports.conversion_summary(conn)),
                "funnel": _dicts(reports.status_funnel(conn)),
            }

    @tool(READ)
    def explain_score(lead_id: Id) -> dict[str, Any]:
        """Explain a lead's AI score with the active lead-scoring model: the score, its
        tier, and every factor with how much it raises or lowers the odds, largest
        first. Changes nothing (it does not rescore the lead)."""
        with backend.call("read") as (conn, _), conn.transaction():
            return scoring.explain(conn, lead_id).to_dict()
