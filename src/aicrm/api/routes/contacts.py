"""/api/contacts: CRUD, filters (by lead, by client) and search, history, as-of."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from aicrm.api import _schemas as schemas
from aicrm.api._reads import get_response
from aicrm.api.auth import SECURITY
from aicrm.api.deps import Db, ReadDb, ReadKey, WriteKey
from aicrm.api.problems import responses
from aicrm.api.routes._common import (
    AsOf,
    Attr,
    CreatedFrom,
    CreatedTo,
    Cursor,
    IfMatch,
    IfNoneMatch,
    Limit,
    Search,
    as_of_response,
    history_response,
    invalid,
    list_query,
    locked_current,
    page_response,
    record_response,
)
from aicrm.crm import contacts, session, store
from aicrm.crm.records import Client, Contact, Lead
from aicrm.db import Connection
from aicrm.errors import NotFound

router = APIRouter(prefix="/contacts", tags=["contacts"])

ContactId = Annotated[uuid.UUID, Path(description="The contact's id.")]


def _parents_exist(
    conn: Connection, lead_id: uuid.UUID | None, client_id: uuid.UUID | None
) -> None:
    """422 naming the field when the lead or client the body names does not exist."""
    for field, cls, value in (("lead_id", Lead, lead_id), ("client_id", Client, client_id)):
        if value is not None:
            try:
                store.get(conn, cls, value)
            except NotFound as exc:
                invalid(field, "body", exc.message)


@router.get("", response_model=schemas.ContactPage, responses=responses(401, 403, 422))
def list_contacts(
    conn: ReadDb,
    key: ReadKey,
    lead_id: Annotated[uuid.UUID | None, Query(description="Only this lead's.")] = None,
    client_id: Annotated[uuid.UUID | None, Query(description="Only this client's.")] = None,
    q: Search = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
    attr: Attr = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """Contacts, newest first, filtered; cursor-paginated (`next_cursor`)."""
    query = list_query(limit=limit, cursor=cursor, search=q, created_from=created_from,
                       created_to=created_to, attr=attr)  # fmt: skip
    page = contacts.list_contacts(conn, lead_id=lead_id, client_id=client_id, query=query)
    return page_response(page)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Contact,
    responses=responses(401, 403, 409, 422),
)
def create_contact(
    body: schemas.ContactCreate,
    conn: Db,
    key: WriteKey,
    allow_duplicate: Annotated[
        bool, Query(description="Accept an email that other leads or contacts already have.")
    ] = False,
) -> Response:
    """Create a contact of one lead or one client (exactly one of `lead_id`,
    `client_id`); 409 with the conflicting records for a known email."""
    if (body.lead_id is None) == (body.client_id is None):
        invalid("lead_id", "body", "Give exactly one of lead_id and client_id.")
    with session.transaction(conn, key.name):
        _parents_exist(conn, body.lead_id, body.client_id)
        contact = contacts.create_contact(
            conn, allow_duplicate=allow_duplicate, **body.model_dump(exclude_none=True)
        )
    return record_response(contact, 201, location=f"/api/contacts/{contact.id}")


@router.get(
    "/{contact_id}",
    response_model=schemas.Contact,
    responses=responses(304, 401, 403, 404, 422),
    openapi_extra=SECURITY,
)
async def get_contact(
    contact_id: ContactId, request: Request, if_none_match: IfNoneMatch = None
) -> Response:
    """One contact, with its ETag (send it back in If-Match to update safely, or in
    If-None-Match to get a 304 when it has not changed). Needs a read key."""
    return await get_response(request, Contact, contact_id, if_none_match)


@router.patch(
    "/{contact_id}",
    response_model=schemas.Contact,
    responses=responses(401, 403, 404, 412, 422),
)
def update_contact(
    contact_id: ContactId,
    body: schemas.ContactUpdate,
    conn: Db,
    key: WriteKey,
    if_match: IfMatch = None,
) -> Response:
    """Change some fields; setting `lead_id` or `client_id` moves the contact (the
    other is cleared). With If-Match, 412 when it changed since that ETag."""
    changes = body.model_dump(exclude_unset=True)
    if "lead_id" in changes and "client_id" in changes:
        invalid("client_id", "body", "A contact belongs to one lead or one client: give one.")
    with session.transaction(conn, key.name):
        current = locked_current(conn, Contact, contact_id, if_match)
        _parents_exist(conn, changes.get("lead_id"), changes.get("client_id"))
        contact = contacts.update_contact(conn, contact_id, changes) if changes else current
    return record_response(contact)


@router.delete(
    "/{contact_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(401, 403, 404, 412, 422),
)
def delete_contact(
    contact_id: ContactId, conn: Db, key: WriteKey, if_match: IfMatch = None
) -> Response:
    """Delete a contact."""
    with session.transaction(conn, key.name):
        locked_current(conn, Contact, contact_id, if_match)
        contacts.delete_contact(conn, contact_id)
    return Response(status_code=204)


@router.get(
    "/{contact_id}/history",
    response_model=list[schemas.HistoryEntry],
    responses=responses(401, 403, 404, 422),
)
def contact_history(contact_id: ContactId, conn: Db, key: ReadKey) -> Response:
    """Every recorded change of the contact, oldest first."""
    return history_response(conn, Contact, contact_id)


@router.get(
    "/{contact_id}/as-of",
    response_model=schemas.Contact,
    responses=responses(401, 403, 404, 422),
)
def contact_as_of(contact_id: ContactId, at: AsOf, conn: Db, key: ReadKey) -> Response:
    """The contact as it was at a moment (404 if it did not exist then)."""
    return as_of_response(conn, Contact, contact_id, at)
