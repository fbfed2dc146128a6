"""``aicrm contacts …``: create, show, list, update, delete."""

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
from aicrm.crm import contacts, session
from aicrm.crm.store import Query
from aicrm.errors import InvalidInput

app = typer.Typer(help="Contacts: people at a lead or at a client.", no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(help="The contact's id (a UUID).")]
LeadOpt = Annotated[str | None, typer.Option("--lead", help="The lead it belongs to.")]
ClientOpt = Annotated[str | None, typer.Option("--client", help="The client it belongs to.")]
FirstOpt = Annotated[str | None, typer.Option(help="First name.")]
LastOpt = Annotated[str | None, typer.Option(help="Last name.")]
EmailOpt = Annotated[str | None, typer.Option(help="Email address.")]
TitleOpt = Annotated[str | None, typer.Option(help="Job title.")]
COLUMNS = ("id", "first_name", "last_name", "email", "title", "lead_id", "client_id")


@app.command()
def create(
    lead: LeadOpt = None,
    client: ClientOpt = None,
    first_name: FirstOpt = None,
    last_name: LastOpt = None,
    email: EmailOpt = None,
    title: TitleOpt = None,
    attr: AttrOpt = None,
    allow_duplicate: Annotated[
        bool, typer.Option(help="Accept an email that other leads or contacts already have.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a contact of exactly one lead (--lead) or one client (--client)."""
    values = given(lead_id=lead, client_id=client, first_name=first_name,
                   last_name=last_name, email=email, title=title)  # fmt: skip
    if attr:
        values["attributes"] = attributes(attr)
    with database() as conn, session.transaction(conn, actor()):
        made = contacts.create_contact(conn, allow_duplicate=allow_duplicate, **values)
    show_record(made, as_json)


@app.command()
def show(contact_id: IdArg, as_json: JsonOpt = False) -> None:
    """Show a contact."""
    with database() as conn:
        found = contacts.get_contact(conn, contact_id)
    show_record(found, as_json)


@app.command("list")
def list_(
    lead: LeadOpt = None,
    client: ClientOpt = None,
    attr: AttrOpt = None,
    search: SearchOpt = None,
    limit: LimitOpt = 50,
    cursor: CursorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List contacts, newest first, optionally of one lead or client."""
    query = Query(attributes=attributes(attr), search=search, limit=limit, cursor=cursor)
    with database(read_only=True) as conn:
        page = contacts.list_contacts(conn, lead_id=lead, client_id=client, query=query)
    show_page(page, COLUMNS, as_json, "contacts")


@app.command()
def update(
    contact_id: IdArg,
    lead: LeadOpt = None,
    client: ClientOpt = None,
    first_name: FirstOpt = None,
    last_name: LastOpt = None,
    email: EmailOpt = None,
    title: TitleOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a contact's fields, or move it to another lead or client."""
    changes = given(lead_id=lead, client_id=client, first_name=first_name,
                    last_name=last_name, email=email, title=title)  # fmt: skip
    if not changes:
        raise InvalidInput("Nothing to change: give at least one field option.")
    with database() as conn, session.transaction(conn, actor()):
        changed = contacts.update_contact(conn, contact_id, changes)
    show_record(changed, as_json)


@app.command()
def delete(contact_id: IdArg) -> None:
    """Delete a contact."""
    with database() as conn, session.transaction(conn, actor()):
        contacts.delete_contact(conn, contact_id)
    output.say(f"deleted contact {contact_id}")
