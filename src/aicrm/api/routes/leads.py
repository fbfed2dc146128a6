"""/api/leads: CRUD, filters and search, convert (one or many), merge, history, as-of."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from aicrm.api import _schemas as schemas
from aicrm.api._etags import check_version, etag, expected_version
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
    invalid,
    json_response,
    list_query,
    locked_current,
    page_response,
    record_response,
)
from aicrm.crm import conversion, leads, merge, session, store
from aicrm.crm.records import IN_PIPELINE, Lead
from aicrm.errors import ReadOnly

router = APIRouter(prefix="/leads", tags=["leads"])

__all__ = ["etag", "router"]

LeadId = Annotated[uuid.UUID, Path(description="The lead's id.")]
AllowDuplicate = Annotated[
    bool, Query(description="Accept an email that other leads or contacts already have.")
]


@router.get("", response_model=schemas.LeadPage, responses=responses(401, 403, 422))
def list_leads(
    conn: ReadDb,
    key: ReadKey,
    status: Annotated[schemas.Status | None, Query(description="Only this status.")] = None,
    source: Annotated[str | None, Query(max_length=200, description="Only this source.")] = None,
    converted: Annotated[bool | None, Query(description="Only converted (or open) leads.")] = None,
    owner: Owner = None,
    q: Search = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
    attr: Attr = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """Leads, newest first, filtered; cursor-paginated (`next_cursor`)."""
    query = list_query(limit=limit, cursor=cursor, search=q, created_from=created_from,
                       created_to=created_to, attr=attr)  # fmt: skip
    page = leads.list_leads(
        conn, status=status, source=source, converted=converted, owner=owner, query=query
    )
    return page_response(page)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Lead,
    responses=responses(401, 403, 409, 422),
)
def create_lead(
    body: schemas.LeadCreate, conn: Db, key: WriteKey, allow_duplicate: AllowDuplicate = False
) -> Response:
    """Create a lead; 409 with the conflicting records when a lead or contact has the
    email already (unless `allow_duplicate`)."""
    values = body.model_dump(exclude_none=True)
    with session.transaction(conn, key.name):
        lead = leads.create_lead(conn, allow_duplicate=allow_duplicate, **values)
    return record_response(lead, 201, location=f"/api/leads/{lead.id}")


@router.post(
    "/convert",
    response_model=schemas.BulkConversion,
    responses=responses(401, 403, 404, 409, 422),
)
def convert_leads(body: schemas.BulkConvertRequest, conn: Db, key: WriteKey) -> Response:
    """Convert many leads, by ids or by a filter, each into a new client, in one
    transaction: all or nothing by default (404 for an unknown id, 409 for duplicates);
    with `all_or_nothing: false` the problem leads are left out and reported. A filter
    without `status` takes open leads only (not lost or unqualified) unless
    `include_closed`."""
    if (body.ids is None) == (body.filter is None):
        invalid("ids", "body", "Give either ids or a filter, not both or neither.")
    query = None
    if body.filter is not None:
        where: dict[str, object] = {"is_converted": False}
        if body.filter.status is not None:
            where["status"] = body.filter.status
        elif not body.filter.include_closed:
            where["status"] = IN_PIPELINE
        if body.filter.source is not None:
            where["source"] = body.filter.source
        query = store.Query(where=where, attributes=body.filter.attributes)
    result = conversion.convert_leads(
        conn, body.ids, query=query, all_or_nothing=body.all_or_nothing,
        allow_duplicates=body.allow_duplicates, actor=key.name,
    )  # fmt: skip
    return json_response(result.to_dict())


@router.get(
    "/{lead_id}",
    response_model=schemas.Lead,
    responses=responses(304, 401, 403, 404, 422),
    openapi_extra=SECURITY,
)
async def get_lead(
    lead_id: LeadId, request: Request, if_none_match: IfNoneMatch = None
) -> Response:
    """One lead, with its ETag (send it back in If-Match to update safely, or in
    If-None-Match to get a 304 when it has not changed). Needs a read key."""
    return await get_response(request, Lead, lead_id, if_none_match)


@router.patch(
    "/{lead_id}",
    response_model=schemas.Lead,
    responses=responses(401, 403, 404, 409, 412, 422),
)
def update_lead(
    lead_id: LeadId,
    body: schemas.LeadUpdate,
    conn: Db,
    key: WriteKey,
    if_match: IfMatch = None,
    allow_duplicate: AllowDuplicate = False,
) -> Response:
    """Change some fields: those left out are kept, `null` clears one. With If-Match,
    412 when the lead changed since that ETag. A converted lead changes only its
    ai_* fields (409 otherwise)."""
    changes = body.model_dump(exclude_unset=True)
    try:
        with session.transaction(conn, key.name):
            expected = expected_version(conn, Lead, lead_id, if_match)
            if not changes:
                lead = leads.get_lead(conn, lead_id)
                check_version(lead, expected)
            else:
                lead = leads.update_lead(conn, lead_id, changes, allow_duplicate=allow_duplicate,
                                         expected_updated_at=expected)  # fmt: skip
    except ReadOnly as exc:
        raise _with_lead(conn, exc, lead_id) from None
    return record_response(lead)


@router.delete(
    "/{lead_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(401, 403, 404, 409, 412, 422),
)
def delete_lead(lead_id: LeadId, conn: Db, key: WriteKey, if_match: IfMatch = None) -> Response:
    """Delete an open lead and its contacts; a converted lead is permanent (409)."""
    try:
        with session.transaction(conn, key.name):
            locked_current(conn, Lead, lead_id, if_match)
            leads.delete_lead(conn, lead_id)
    except ReadOnly as exc:
        raise _with_lead(conn, exc, lead_id) from None
    return Response(status_code=204)


def _with_lead(conn: Db, exc: ReadOnly, lead_id: uuid.UUID) -> ReadOnly:
    """The refusal, with the converted lead as the conflicting record."""
    lead = leads.get_lead(conn, lead_id)
    return ReadOnly(exc.message, details={"conflicting": lead.to_dict()})


@router.post(
    "/{lead_id}/convert",
    response_model=schemas.Conversion,
    responses=responses(401, 403, 404, 409, 422),
)
def convert_lead(
    lead_id: LeadId, conn: Db, key: WriteKey, body: schemas.ConvertRequest | None = None
) -> Response:
    """Convert a lead into a new client, or into `client_id`, in one transaction (the
    library's semantics). Converting again into the same client is a no-op that says
    `already_converted`; into another client it is a 409 with the lead."""
    body = body or schemas.ConvertRequest()
    done = conversion.convert_lead(
        conn, lead_id, client_id=body.client_id, overwrite=body.overwrite,
        allow_duplicate=body.allow_duplicate, actor=key.name,
    )  # fmt: skip
    return json_response(done.to_dict())


@router.post(
    "/{lead_id}/merge",
    response_model=schemas.MergeResult,
    responses=responses(401, 403, 404, 409, 422),
)
def merge_leads(lead_id: LeadId, body: schemas.MergeRequest, conn: Db, key: WriteKey) -> Response:
    """Merge `others` into this lead: its empty fields are filled from them, their
    contacts and history move to it, and they are deleted. Converted leads cannot
    take part (409)."""
    if lead_id in body.others or len(set(body.others)) != len(body.others):
        invalid("others", "body", "Name each lead to merge once, and not the kept lead.")
    done = merge.merge_leads(conn, lead_id, body.others, actor=key.name)
    return json_response(
        {
            "kept": done.kept.to_dict(),
            "merged": [str(i) for i in done.merged],
            "contacts_moved": done.contacts_moved,
        }
    )


@router.get(
    "/{lead_id}/history",
    response_model=list[schemas.HistoryEntry],
    responses=responses(401, 403, 404, 422),
)
def lead_history(lead_id: LeadId, conn: Db, key: ReadKey) -> Response:
    """Every recorded change of the lead, oldest first: when, by whom (the API key's
    name, for changes made through the API), from what to what."""
    return history_response(conn, Lead, lead_id)


@router.get(
    "/{lead_id}/as-of",
    response_model=schemas.Lead,
    responses=responses(401, 403, 404, 422),
)
def lead_as_of(lead_id: LeadId, at: AsOf, conn: Db, key: ReadKey) -> Response:
    """The lead as it was at a moment (404 if it did not exist then)."""
    return as_of_response(conn, Lead, lead_id, at)
