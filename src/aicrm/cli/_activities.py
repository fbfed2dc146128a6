"""``aicrm activities …``: log notes, calls, emails, meetings and tasks on a lead,
client or contact; list them; complete tasks; my open tasks."""

from __future__ import annotations

from typing import Annotated

import typer

from aicrm.cli._common import (
    AttrOpt,
    CursorOpt,
    JsonOpt,
    LimitOpt,
    actor,
    attributes,
    database,
    moment,
    show_page,
    show_record,
)
from aicrm.crm import activities, session
from aicrm.crm.pagination import Page

app = typer.Typer(
    help="Activities: notes, calls, emails, meetings and tasks of leads, clients, contacts.",
    no_args_is_help=True,
)

LeadOpt = Annotated[str | None, typer.Option("--lead", help="The lead's id.")]
ClientOpt = Annotated[str | None, typer.Option("--client", help="The client's id.")]
ContactOpt = Annotated[str | None, typer.Option("--contact", help="The contact's id.")]
COLUMNS = ("id", "kind", "subject", "due_at", "done_at", "author", "created_at")


@app.command()
def add(
    kind: Annotated[str, typer.Option(help="note, call, email, meeting or task.")],
    subject: Annotated[str, typer.Option(help="One line: what it was about.")],
    lead: LeadOpt = None,
    client: ClientOpt = None,
    contact: ContactOpt = None,
    body: Annotated[str | None, typer.Option(help="The text: notes, a call summary.")] = None,
    due: Annotated[str | None, typer.Option(help="A task's due date (ISO 8601).")] = None,
    assignee: Annotated[
        str | None, typer.Option(help="A task's assignee: a user's email or id.")
    ] = None,
    attr: AttrOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Log an activity on exactly one lead, client or contact; the author is the actor
    (AICRM_ACTOR or the OS user)."""
    with database() as conn, session.transaction(conn, actor()):
        activity = activities.add_activity(
            conn, kind=kind, subject=subject, lead_id=lead, client_id=client,
            contact_id=contact, body=body, due_at=moment(due, "due date"), assignee=assignee,
            attributes=attributes(attr) if attr else None,
        )  # fmt: skip
    show_record(activity, as_json)


@app.command("list")
def list_(
    lead: LeadOpt = None,
    client: ClientOpt = None,
    contact: ContactOpt = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    limit: LimitOpt = 50,
    cursor: CursorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List one record's activities, newest first."""
    with database(read_only=True) as conn:
        page = activities.list_activities(
            conn, lead_id=lead, client_id=client, contact_id=contact, kind=kind,
            cursor=cursor, limit=limit,
        )  # fmt: skip
    show_page(page, COLUMNS, as_json, "activities")


@app.command()
def done(
    activity_id: Annotated[str, typer.Argument(help="The task's id.")],
    as_json: JsonOpt = False,
) -> None:
    """Mark a task done (a done task stays done at its first time)."""
    with database() as conn, session.transaction(conn, actor()):
        task = activities.complete_task(conn, activity_id)
    show_record(task, as_json)


@app.command()
def tasks(
    user: Annotated[str, typer.Option("--user", help="The assignee: a user's email or id.")],
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """A user's open tasks, soonest due first (those without a due date last)."""
    with database(read_only=True) as conn:
        found = activities.open_tasks(conn, user, limit=limit)
    show_page(Page(found, None), COLUMNS, as_json, "open tasks")
