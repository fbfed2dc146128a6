"""The dashboard's write forms: create and edit a lead, log an activity, complete a task,
reassign a lead or a client.

Plain HTML forms: ``POST``, then a redirect (303) to the record's page. Each needs a
key with the write scope (a read key gets the 403 page) and is refused when the
browser says it comes from another site, like the convert button
(:func:`aicrm.web._pages.same_site`). Text is stored exactly as typed (no trimming:
only an empty field means "no value"); a textarea's line breaks, which browsers send
as CRLF, are stored as LF.

A lead whose email belongs to other records is not saved: the form comes back (409)
with the records in the way and a "save anyway" button. An edit carries the version
of the lead it was made on; when someone changed the lead since, the form comes
back (409) with what is stored now, and saving again overwrites it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from aicrm.api.deps import Db, WriteKey
from aicrm.crm import activities, leads, session, statuses as crm_statuses, users
from aicrm.crm.records import Lead
from aicrm.crm.store import Stale
from aicrm.db import Connection
from aicrm.errors import DuplicateFound, InvalidInput
from aicrm.web._pages import local_path, same_site
from aicrm.web._render import PageRoute, page

router = APIRouter(include_in_schema=False, route_class=PageRoute)

FIELDS = ("first_name", "last_name", "email", "company_name", "source", "status")
NOBODY = ""  # the owner select's value for "nobody"
RULES = "rules"  # on a new lead: let the assignment rules choose the owner

Field = Annotated[str, Form()]


def _value(text: str) -> str | None:
    """A form field's value: None when empty, else exactly what was typed."""
    return text if text != "" else None


def _lines(text: str) -> str | None:
    """A textarea's value with the browser's CRLF line breaks as LF."""
    return _value(text.replace("\r\n", "\n"))


def _form(
    request: Request,
    conn: Connection,
    status: int,
    *,
    lead: Lead | None,
    values: dict[str, Any],
    **extra: Any,
) -> Response:
    context: dict[str, Any] = {
        "lead": lead,
        "values": values,
        "statuses": crm_statuses.names(conn),
        "users": users.list_users(conn, include_inactive=False),
        "duplicates": None,
        "stale": None,
        "error": None,
        "version": lead.updated_at.isoformat() if lead else "",
    }
    return page(request, "lead_form.html", status, **(context | extra))


def _blank_values() -> dict[str, Any]:
    return dict.fromkeys(FIELDS, "") | {"status": "new", "owner": RULES}


def _values_of(lead: Lead) -> dict[str, Any]:
    found = {name: getattr(lead, name) or "" for name in FIELDS}
    return found | {"owner": str(lead.owner_id) if lead.owner_id else NOBODY}


@router.get("/leads/new")
def new_lead_form(request: Request, conn: Db, key: WriteKey) -> Response:
    """The form for a new lead."""
    return _form(request, conn, 200, lead=None, values=_blank_values())


@router.post("/leads/new")
def create_lead(
    request: Request,
    conn: Db,
    key: WriteKey,
    first_name: Field = "",
    last_name: Field = "",
    email: Field = "",
    company_name: Field = "",
    source: Field = "",
    status: Field = "new",
    owner: Field = RULES,
    allow_duplicate: Annotated[bool, Form()] = False,
) -> Response:
    """Create the lead and show it; a duplicate email or a bad value: the form again."""
    same_site(request)
    posted = {"first_name": first_name, "last_name": last_name, "email": email,
              "company_name": company_name, "source": source, "status": status}  # fmt: skip
    values: dict[str, str | None] = {k: v for k, v in posted.items() if v != ""}
    if owner != RULES:
        values["owner_id"] = _value(owner)
    form = posted | {"owner": owner}
    try:
        with session.transaction(conn, key.name):
            made = leads.create_lead(conn, allow_duplicate=allow_duplicate, **values)
    except DuplicateFound as exc:
        conflicting = exc.details.get("conflicting", [])
        return _form(request, conn, 409, lead=None, values=form, duplicates=conflicting)
    except InvalidInput as exc:
        return _form(request, conn, 422, lead=None, values=form, error=exc.message)
    return RedirectResponse(f"/leads/{made.id}", 303)


@router.get("/leads/{lead_id}/edit")
def edit_lead_form(request: Request, lead_id: str, conn: Db, key: WriteKey) -> Response:
    """The form to edit a lead, filled with what is stored now."""
    lead = leads.get_lead(conn, lead_id)
    return _form(request, conn, 200, lead=lead, values=_values_of(lead))


@router.post("/leads/{lead_id}/edit")
def update_lead(
    request: Request,
    lead_id: str,
    conn: Db,
    key: WriteKey,
    version: Field = "",
    first_name: Field = "",
    last_name: Field = "",
    email: Field = "",
    company_name: Field = "",
    source: Field = "",
    status: Field = "",
    owner: Field = NOBODY,
    allow_duplicate: Annotated[bool, Form()] = False,
) -> Response:
    """Save the fields that changed (only those: the history shows what was edited),
    if the lead is still at the version the form was made on."""
    same_site(request)
    lead = leads.get_lead(conn, lead_id)
    posted = {"first_name": first_name, "last_name": last_name, "email": email,
              "company_name": company_name, "source": source, "status": status}  # fmt: skip
    form = posted | {"owner": owner}
    changes: dict[str, Any] = {
        name: _value(value)
        for name, value in posted.items()
        if _value(value) != getattr(lead, name)
    }
    if status == "":
        changes.pop("status", None)  # a lead always has a status
    if _value(owner) != (str(lead.owner_id) if lead.owner_id else None):
        changes["owner_id"] = _value(owner)
    try:
        expected = datetime.fromisoformat(version) if version else None
    except ValueError:
        expected = None  # a damaged version: the update below is unguarded, like without one
    try:
        with session.transaction(conn, key.name):
            leads.update_lead(
                conn, lead.id, changes, allow_duplicate=allow_duplicate,
                expected_updated_at=expected if changes else None,
            )  # fmt: skip
    except Stale:
        current = leads.get_lead(conn, lead.id)
        return _form(request, conn, 409, lead=current, values=form, stale=_values_of(current))
    except DuplicateFound as exc:
        conflicting = exc.details.get("conflicting", [])
        return _form(request, conn, 409, lead=lead, values=form, duplicates=conflicting)
    except InvalidInput as exc:
        return _form(request, conn, 422, lead=lead, values=form, error=exc.message)
    return RedirectResponse(f"/leads/{lead.id}", 303)


def _due(text: str) -> datetime | None:
    """A ``datetime-local`` field's value (no time zone: UTC, as the form says)."""
    if text == "":
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"'{text}' is not a date and time; pick one in the form.") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _log(
    request: Request, conn: Connection, key: Any, target: str, record_id: str, form: dict[str, str]
) -> Response:
    same_site(request)
    with session.transaction(conn, key.name):
        activities.add_activity(
            conn,
            kind=form["kind"],
            subject=form["subject"],
            body=_lines(form["body"]),
            due_at=_due(form["due_at"]),
            assignee=_value(form["assignee"]),
            lead_id=record_id if target == "lead" else None,
            client_id=record_id if target == "client" else None,
        )
    return RedirectResponse(f"/{target}s/{record_id}#work", 303)


@router.post("/leads/{lead_id}/activities")
def log_lead_activity(
    request: Request,
    lead_id: str,
    conn: Db,
    key: WriteKey,
    kind: Field = "note",
    subject: Field = "",
    body: Field = "",
    due_at: Field = "",
    assignee: Field = "",
) -> Response:
    """Log an activity on the lead, and show the lead again."""
    form = {"kind": kind, "subject": subject, "body": body, "due_at": due_at, "assignee": assignee}
    return _log(request, conn, key, "lead", lead_id, form)


@router.post("/clients/{client_id}/activities")
def log_client_activity(
    request: Request,
    client_id: str,
    conn: Db,
    key: WriteKey,
    kind: Field = "note",
    subject: Field = "",
    body: Field = "",
    due_at: Field = "",
    assignee: Field = "",
) -> Response:
    """Log an activity on the client, and show the client again."""
    form = {"kind": kind, "subject": subject, "body": body, "due_at": due_at, "assignee": assignee}
    return _log(request, conn, key, "client", client_id, form)


@router.post("/activities/{activity_id}/done")
def complete_task(
    request: Request, activity_id: str, conn: Db, key: WriteKey, next: Field = ""
) -> Response:
    """Mark the task done and go back where the button was (a path on this site)."""
    same_site(request)
    with session.transaction(conn, key.name):
        done = activities.complete_task(conn, activity_id)
    owner = f"/leads/{done.lead_id}" if done.lead_id else f"/clients/{done.client_id}"
    back = local_path(next) if next else (owner if done.lead_id or done.client_id else "/leads")
    return RedirectResponse(back, 303)


@router.post("/{table}/{record_id}/owner")
def reassign(
    request: Request, table: str, record_id: str, conn: Db, key: WriteKey, owner: Field = NOBODY
) -> Response:
    """Give the lead or client to another active user (empty: to nobody)."""
    same_site(request)
    if table not in ("leads", "clients"):
        raise InvalidInput(f"Only leads and clients have owners, not {table}.")
    with session.transaction(conn, key.name):
        record = users.assign(conn, table, record_id, _value(owner))
    return RedirectResponse(f"/{table}/{record.id}#work", 303)
