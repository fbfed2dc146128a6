"""``aicrm leads …``: create, show, list, update, delete, convert, merge, history."""

from __future__ import annotations

import json
from pathlib import Path
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
    moment,
    show_page,
    show_record,
)
from aicrm.crm import conversion, history, leads, merge, session, users
from aicrm.crm.records import IN_PIPELINE, Lead
from aicrm.crm.store import Query
from aicrm.errors import InvalidInput

app = typer.Typer(help="Leads: prospects until they convert.", no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(help="The lead's id (a UUID).")]
FirstOpt = Annotated[str | None, typer.Option(help="First name.")]
LastOpt = Annotated[str | None, typer.Option(help="Last name.")]
EmailOpt = Annotated[str | None, typer.Option(help="Email address.")]
CompanyOpt = Annotated[str | None, typer.Option("--company", help="Company name.")]
SourceOpt = Annotated[str | None, typer.Option(help="Where the lead came from (web, referral…).")]
StatusOpt = Annotated[
    str | None, typer.Option(help="new, contacted, qualified, unqualified or lost.")
]
OwnerOpt = Annotated[str | None, typer.Option(help="The owner: a user's email or id.")]
AllowDupOpt = Annotated[
    bool, typer.Option(help="Accept an email that other leads or contacts already have.")
]
COLUMNS = ("id", "first_name", "last_name", "email", "company_name", "source", "status",
           "ai_score", "created_at")  # fmt: skip


@app.command()
def create(
    first_name: FirstOpt = None,
    last_name: LastOpt = None,
    email: EmailOpt = None,
    company: CompanyOpt = None,
    source: SourceOpt = None,
    status: StatusOpt = None,
    attr: AttrOpt = None,
    owner: OwnerOpt = None,
    allow_duplicate: AllowDupOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a lead; an email that a lead or contact already has is refused (exit 5).
    Without --owner, the assignment rules choose one ('aicrm users rule')."""
    values = given(first_name=first_name, last_name=last_name, email=email,
                   company_name=company, source=source, status=status,
                   owner_id=owner)  # fmt: skip
    if attr:
        values["attributes"] = attributes(attr)
    with database() as conn, session.transaction(conn, actor()):
        lead = leads.create_lead(conn, allow_duplicate=allow_duplicate, **values)
    show_record(lead, as_json)


@app.command()
def show(
    lead_id: IdArg,
    as_of: Annotated[
        str | None, typer.Option(help="Show the lead as it was at this ISO 8601 time.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a lead, now or as it was at a moment (--as-of)."""
    with database() as conn:
        when = moment(as_of, "moment for --as-of")
        lead = (
            leads.get_lead(conn, lead_id)
            if when is None
            else history.as_of(conn, Lead, lead_id, when)
        )
    show_record(lead, as_json)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    converted: Annotated[
        bool | None, typer.Option("--converted/--open", help="Only converted, or only open.")
    ] = None,
    created_from: Annotated[str | None, typer.Option(help="Created at or after (ISO).")] = None,
    created_to: Annotated[str | None, typer.Option(help="Created before (ISO).")] = None,
    attr: AttrOpt = None,
    search: SearchOpt = None,
    owner: Annotated[str | None, typer.Option(help="Only this owner's (email or id).")] = None,
    limit: LimitOpt = 50,
    cursor: CursorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List leads, newest first, with filters and cursor pagination."""
    query = Query(attributes=attributes(attr), search=search, limit=limit, cursor=cursor,
                  created_from=moment(created_from), created_to=moment(created_to))  # fmt: skip
    with database(read_only=True) as conn:
        page = leads.list_leads(conn, status=status, source=source, converted=converted,
                                owner=owner, query=query)  # fmt: skip
    show_page(page, COLUMNS, as_json, "leads")


@app.command()
def update(
    lead_id: IdArg,
    first_name: FirstOpt = None,
    last_name: LastOpt = None,
    email: EmailOpt = None,
    company: CompanyOpt = None,
    source: SourceOpt = None,
    status: StatusOpt = None,
    attr: AttrOpt = None,
    allow_duplicate: AllowDupOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a lead's fields (--attr adds or replaces attribute keys)."""
    changes = given(first_name=first_name, last_name=last_name, email=email,
                    company_name=company, source=source, status=status)  # fmt: skip
    with database() as conn, session.transaction(conn, actor()):
        if attr:
            changes["attributes"] = leads.get_lead(conn, lead_id).attributes | attributes(attr)
        if not changes:
            raise InvalidInput("Nothing to change: give at least one field option.")
        lead = leads.update_lead(conn, lead_id, changes, allow_duplicate=allow_duplicate)
    show_record(lead, as_json)


@app.command()
def assign(
    lead_id: IdArg,
    owner: Annotated[str, typer.Argument(help="The new owner: a user's email or id.")],
    as_json: JsonOpt = False,
) -> None:
    """Give a lead to another owner; the history records the change."""
    with database() as conn, session.transaction(conn, actor()):
        lead = users.assign(conn, "leads", lead_id, owner)
    show_record(lead, as_json)


@app.command()
def delete(lead_id: IdArg) -> None:
    """Delete an open lead and its contacts (converted leads are permanent: exit 5)."""
    with database() as conn, session.transaction(conn, actor()):
        leads.delete_lead(conn, lead_id)
    output.say(f"deleted lead {lead_id}")


@app.command()
def convert(
    lead_id: IdArg,
    into: Annotated[
        str | None, typer.Option("--into", help="Convert into this existing client.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="With --into: the lead's values replace the client's.")
    ] = False,
    allow_duplicate: AllowDupOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert a lead into a new client (or --into one) in one transaction."""
    with database() as conn:
        done = conversion.convert_lead(conn, lead_id, client_id=into, overwrite=overwrite,
                                       allow_duplicate=allow_duplicate, actor=actor())  # fmt: skip
    if as_json:
        output.emit_json(done.to_dict())
    elif done.already_converted:
        output.say(f"lead {done.lead_id} was already converted to client {done.client_id} "
                   f"on {done.conversion_date:%Y-%m-%d %H:%M}; nothing changed")  # fmt: skip
    else:
        made = "new client" if done.created_client else "client"
        output.say(f"converted lead {done.lead_id} into {made} {done.client_id} "
                   f"({done.contacts_moved} contact(s) moved)")  # fmt: skip


@app.command("convert-many")
def convert_many(
    lead_ids: Annotated[list[str] | None, typer.Argument(help="Lead ids.")] = None,
    ids_file: Annotated[Path | None, typer.Option(help="A file with one lead id per line.")] = None,
    status: Annotated[str | None, typer.Option(help="Leads with this status.")] = None,
    source: Annotated[str | None, typer.Option(help="Open leads from this source.")] = None,
    attr: AttrOpt = None,
    include_closed: Annotated[
        bool,
        typer.Option(help="With filters but no --status: lost and unqualified leads too."),
    ] = False,
    per_row: Annotated[
        bool, typer.Option(help="Convert what can be, report the rest (default: all or none).")
    ] = False,
    allow_duplicates: Annotated[
        bool, typer.Option(help="Convert leads whose email others share too.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert many leads set-based, by ids or by filter; all or nothing by default.

    A filter without --status takes open leads only (new, contacted, qualified), not
    lost or unqualified ones, unless --include-closed.
    """
    chosen = list(lead_ids or [])
    if ids_file is not None:
        try:
            chosen += [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise InvalidInput(f"Cannot read {ids_file}: {exc.strerror}.") from None
    filtered = status is not None or source is not None or bool(attr)
    if bool(chosen) == filtered:
        raise InvalidInput("Give lead ids (or --ids-file), or filters, but not both.")
    query = None
    if filtered:
        chosen_status = status or (None if include_closed else IN_PIPELINE)
        where = given(status=chosen_status, source=source) | {"is_converted": False}
        query = Query(where=where, attributes=attributes(attr))
    with database() as conn, output.progress(not as_json) as step:
        result = conversion.convert_leads(
            conn, chosen or None, query=query, all_or_nothing=not per_row,
            allow_duplicates=allow_duplicates, actor=actor(),
            progress=lambda done, total: step(f"converted {done:,} of {total:,} leads"),
        )  # fmt: skip
    if as_json:
        output.emit_json(result.to_dict())
        return
    output.say(
        f"converted {len(result.converted):,} lead(s); "
        f"{len(result.already_converted):,} already converted; "
        f"{len(result.not_found):,} not found; {len(result.duplicates):,} duplicate(s)"
    )
    for lead, reason in list(result.duplicates.items())[:20]:
        output.say(f"  skipped {lead}: {reason}")


@app.command("merge")
def merge_(
    keep: Annotated[str, typer.Argument(help="The lead to keep.")],
    others: Annotated[list[str], typer.Argument(help="The leads merged into it and deleted.")],
    as_json: JsonOpt = False,
) -> None:
    """Merge duplicate leads into KEEP: fill its empty fields, move contacts and history."""
    with database() as conn:
        done = merge.merge_leads(conn, keep, others, actor=actor())
    if as_json:
        output.emit_json({"kept": done.kept.to_dict(), "merged": [str(i) for i in done.merged],
                          "contacts_moved": done.contacts_moved})  # fmt: skip
    else:
        output.say(f"merged {len(done.merged)} lead(s) into {done.kept.id} "
                   f"({done.contacts_moved} contact(s) moved)")  # fmt: skip


@app.command("history")
def history_(lead_id: IdArg, as_json: JsonOpt = False) -> None:
    """Show a lead's timeline: every change, when, by whom, from what to what."""
    with database() as conn:
        entries = history.timeline(conn, "leads", lead_id)
        if not entries:
            leads.get_lead(conn, lead_id)  # not found at all: exit 4
    if as_json:
        output.emit_json([e.to_dict() for e in entries])
        return
    if not entries:
        output.say("no recorded changes (the lead predates the history)")
    for entry in entries:
        output.say(f"{entry.changed_at:%Y-%m-%d %H:%M:%S}  {entry.operation:<6}  {entry.actor}")
        for column, change in entry.changes.items():
            if entry.operation == "update":
                old, new = change
                output.say(f"    {column}: {_json(old)} -> {_json(new)}")
            elif change not in (None, {}, ""):
                output.say(f"    {column}: {_json(change)}")


def _json(value: object) -> str:
    """A history value as JSON (``null``, ``"Hopper"``, ``{"plan": "pro"}``), escaped."""
    return output.printable(json.dumps(value, ensure_ascii=False))
