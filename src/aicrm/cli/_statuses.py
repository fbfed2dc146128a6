"""``aicrm statuses …``: list, add and remove lead statuses (docs/custom-statuses.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from aicrm.cli import _output as output
from aicrm.cli._common import JsonOpt, actor, database
from aicrm.crm import session, statuses

app = typer.Typer(
    help="Lead statuses: the funnel's stages, with a category (open, converted, lost).",
    no_args_is_help=True,
)


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List the statuses in the funnel's order, with their category and leads."""
    with database() as conn:
        found = statuses.list_statuses(conn, count=True)
    if as_json:
        output.emit_json([s.to_dict() for s in found])
        return
    width = max(len(s.name) for s in found)
    for s in found:
        leads = "" if s.leads is None else f"{s.leads:>10,} leads"
        output.say(f"{s.name:<{width}}  {s.category:<9}  {leads}".rstrip())


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="The new status, e.g. demo_scheduled.")],
    category: Annotated[str, typer.Option(help="open (in the funnel) or lost (left it).")] = "open",
    after: Annotated[
        str | None,
        typer.Option(help="Place it after this status [default: last of its category]."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a status (no migration needed); leads can have it at once."""
    with database() as conn, session.transaction(conn, actor()):
        added = statuses.add_status(conn, name, category, after)
    if as_json:
        output.emit_json(added.to_dict())
    else:
        output.say(f"added status {added.name} ({added.category})")


@app.command()
def remove(
    name: Annotated[str, typer.Argument(help="The status to remove.")],
    into: Annotated[str, typer.Option("--into", help="The status its leads move to.")],
    as_json: JsonOpt = False,
) -> None:
    """Remove a custom status, moving its leads to another (the history records it)."""
    with database() as conn, session.transaction(conn, actor()):
        moved = statuses.remove_status(conn, name, into)
    if as_json:
        output.emit_json({"removed": name, "into": into, "leads_moved": moved})
    else:
        output.say(f"removed status {name}; {moved:,} leads moved to {into}")
