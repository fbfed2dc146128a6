"""/api/clients: CRUD, filters and search, history, as-of."""

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
    Owner,
    Search,
    as_of_response,
    history_response,
    list_query,
    locked_current,
    page_response,
    record_response,
)
from aicrm.crm import clients, session
from aicrm.crm.records import Client

router = APIRouter(prefix="/clients", tags=["clients"])

ClientId = Annotated[uuid.UUID, Path(description="The client's id.")]


@router.get("", response_model=schemas.ClientPage, responses=responses(401, 403, 422))
def list_clients(
    conn: ReadDb,
    key: ReadKey,
    industry: Annotated[
        str | None, Query(max_length=200, description="Only this industry.")
    ] = None,
    owner: Owner = None,
    q: Search = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
    attr: Attr = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """Clients, newest first, filtered; cursor-paginated (`next_cursor`)."""
    query = list_query(limit=limit, cursor=cursor, search=q, created_from=created_from,
                       created_to=created_to, attr=attr)  # fmt: skip
    return page_response(clients.list_clients(conn, industry=industry, owner=owner, query=query))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Client,
    responses=responses(401, 403, 422),
)
def create_client(body: schemas.ClientCreate, conn: Db, key: WriteKey) -> Response:
    """Create a client (clients usually come from converting leads)."""
    with session.transaction(conn, key.name):
        client = clients.create_client(conn, **body.model_dump(exclude_none=True))
    return record_response(client, 201, location=f"/api/clients/{client.id}")


@router.get(
    "/{client_id}",
    response_model=schemas.Client,
    responses=responses(304, 401, 403, 404, 422),
    openapi_extra=SECURITY,
)
async def get_client(
    client_id: ClientId, request: Request, if_none_match: IfNoneMatch = None
) -> Response:
    """One client, with its ETag (send it back in If-Match to update safely, or in
    If-None-Match to get a 304 when it has not changed). Needs a read key."""
    return await get_response(request, Client, client_id, if_none_match)


@router.patch(
    "/{client_id}",
    response_model=schemas.Client,
    responses=responses(401, 403, 404, 412, 422),
)
def update_client(
    client_id: ClientId,
    body: schemas.ClientUpdate,
    conn: Db,
    key: WriteKey,
    if_match: IfMatch = None,
) -> Response:
    """Change some fields: those left out are kept, `null` clears one. With If-Match,
    412 when the client changed since that ETag."""
    changes = body.model_dump(exclude_unset=True)
    with session.transaction(conn, key.name):
        current = locked_current(conn, Client, client_id, if_match)
        client = clients.update_client(conn, client_id, changes) if changes else current
    return record_response(client)


@router.delete(
    "/{client_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(401, 403, 404, 409, 412, 422),
)
def delete_client(
    client_id: ClientId, conn: Db, key: WriteKey, if_match: IfMatch = None
) -> Response:
    """Delete a client that nothing refers to; a client with converted leads or
    contacts is kept (409, with those records)."""
    with session.transaction(conn, key.name):
        locked_current(conn, Client, client_id, if_match)
        clients.delete_client(conn, client_id)
    return Response(status_code=204)


@router.get(
    "/{client_id}/history",
    response_model=list[schemas.HistoryEntry],
    responses=responses(401, 403, 404, 422),
)
def client_history(client_id: ClientId, conn: Db, key: ReadKey) -> Response:
    """Every recorded change of the client, oldest first."""
    return history_response(conn, Client, client_id)


@router.get(
    "/{client_id}/as-of",
    response_model=schemas.Client,
    responses=responses(401, 403, 404, 422),
)
def client_as_of(client_id: ClientId, at: AsOf, conn: Db, key: ReadKey) -> Response:
    """The client as it was at a moment (404 if it did not exist then)."""
    return as_of_response(conn, Client, client_id, at)
