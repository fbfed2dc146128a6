"""``aicrm users …``: the people and agents who own leads and clients, and the rules
that assign new leads in turn."""

from __future__ import annotations

from typing import Annotated

import typer

from aicrm.cli import _output as output
from aicrm.cli._common import JsonOpt, actor, database, show_page, show_record
from aicrm.crm import session, users
from aicrm.crm.pagination import Page

app = typer.Typer(help="Users: owners of leads and clients, assignees of tasks.",
                  no_args_is_help=True)  # fmt: skip
rule_app = typer.Typer(
    help="Assignment rules: new leads without an owner go to users in turn (round-robin).",
    no_args_is_help=True,
)
app.add_typer(rule_app, name="rule")

UserArg = Annotated[str, typer.Argument(help="The user's email or id.")]
COLUMNS = ("id", "name", "email", "active", "created_at")


@app.command()
def add(
    email: Annotated[str, typer.Argument(help="The user's email (unique, ignoring case).")],
    name: Annotated[str, typer.Option(help="The user's name.")],
    as_json: JsonOpt = False,
) -> None:
    """Add an active user."""
    with database() as conn, session.transaction(conn, actor()):
        user = users.add_user(conn, name, email)
    show_record(user, as_json)


@app.command("list")
def list_(
    active: Annotated[bool, typer.Option("--active", help="Only active users.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the users, oldest first."""
    with database(read_only=True) as conn:
        found = users.list_users(conn, include_inactive=not active)
    show_page(Page(found, None), COLUMNS, as_json, "users")


@app.command()
def deactivate(user: UserArg, as_json: JsonOpt = False) -> None:
    """Deactivate a user: it keeps its records and tasks; the round-robin skips it."""
    with database() as conn, session.transaction(conn, actor()):
        found = users.deactivate_user(conn, user)
    show_record(found, as_json)


@rule_app.command("set")
def rule_set(
    users_: Annotated[
        list[str] | None,
        typer.Argument(metavar="[USER]...", help="Emails or ids; none: every active user."),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Only leads of this source; without: any source.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or replace the rule for a source (or for any source)."""
    with database() as conn, session.transaction(conn, actor()):
        rule = users.set_rule(conn, source, users_ or [])
    show_record(rule, as_json)


@rule_app.command("list")
def rule_list(as_json: JsonOpt = False) -> None:
    """List the assignment rules (the one for any source first)."""
    with database(read_only=True) as conn:
        rules = users.list_rules(conn)
        emails = {u.id: u.email for u in users.list_users(conn)}
    if as_json:
        output.emit_json([r.to_dict() for r in rules])
        return
    for rule in rules:
        who = ", ".join(emails.get(u, str(u)) for u in rule.user_ids) or "every active user"
        where = f"source {rule.source}" if rule.source is not None else "any source"
        output.say(output.printable(f"{where}: {who}"))


@rule_app.command("remove")
def rule_remove(
    source: Annotated[
        str | None, typer.Option(help="The rule's source; without: the rule for any source.")
    ] = None,
) -> None:
    """Remove the rule for a source (or the rule for any source)."""
    with database() as conn, session.transaction(conn, actor()):
        users.remove_rule(conn, source)
    output.say(
        "removed the assignment rule for " + (f"source {source}" if source else "any source")
    )
