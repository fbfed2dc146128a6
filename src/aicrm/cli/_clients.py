"""``aicrm clients …``: create, show, list, update, delete."""

from __future__ import annotations

from typing import Annotated

import typer

from aicrm.cli import _output as output
from aicrm.cli._common import (
    AttrOpt,
    CursorOpt,
    JsonOpt,
    LimitOpt,
    SearchOpt,
    actor,
    attributes,
    database,
    given,
    show_page,
    show_record,
)
from aicrm.crm import clients, session
from aicrm.crm.store import Query
from aicrm.errors import InvalidInput

app = typer.Typer(help="Clients: converted leads, the customers.", no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(help="The client's id (a UUID).")]
IndustryOpt = Annotated[str | None, typer.Option(help="The client's industry.")]
COLUMNS = ("id", "name", "industry", "ai_score", "created_at")


@app.command()
def create(
    name: Annotated[str, typer.Option(help="The client's name.")],
    industry: IndustryOpt = None,
    attr: AttrOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a client directly (converting a lead is the usual way)."""
    values = given(name=name, industry=industry)
    if attr:
        values["attributes"] = attributes(attr)
    with database() as conn, session.transaction(conn, actor()):
        client = clients.create_client(conn, **values)
    show_record(client, as_json)


@app.command()
def show(client_id: IdArg, as_json: JsonOpt = False) -> None:
    """Show a client."""
    with database() as conn:
        client = clients.get_client(conn, client_id)
    show_record(client, as_json)


@app.command("list")
def list_(
    industry: IndustryOpt = None,
    attr: AttrOpt = None,
    search: SearchOpt = None,
    owner: Annotated[str | None, typer.Option(help="Only this owner's (email or id).")] = None,
    limit: LimitOpt = 50,
    cursor: CursorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List clients, newest first."""
    query = Query(attributes=attributes(attr), search=search, limit=limit, cursor=cursor)
    with database(read_only=True) as conn:
        page = clients.list_clients(conn, industry=industry, owner=owner, query=query)
    show_page(page, COLUMNS, as_json, "clients")


@app.command()
def update(
    client_id: IdArg,
    name: Annotated[str | None, typer.Option(help="The client's name.")] = None,
    industry: IndustryOpt = None,
    attr: AttrOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a client's fields."""
    changes = given(name=name, industry=industry)
    with database() as conn, session.transaction(conn, actor()):
        if attr:
            changes["attributes"] = clients.get_client(conn, client_id).attributes | attributes(
                attr
            )
        if not changes:
            raise InvalidInput("Nothing to change: give at least one field option.")
        client = clients.update_client(conn, client_id, changes)
    show_record(client, as_json)


@app.command()
def delete(client_id: IdArg) -> None:
    """Delete a client nothing refers to; one with converted leads or contacts is kept (exit 5)."""
    with database() as conn, session.transaction(conn, actor()):
        clients.delete_client(conn, client_id)
    output.say(f"deleted client {client_id}")
