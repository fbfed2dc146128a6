"""/api/activities, a record's activities and timeline, and /api/tasks (issue #17)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from aicrm import apikeys
from aicrm.api import _activity_schemas as schemas, _timelines as timelines
from aicrm.api.auth import SECURITY
from aicrm.api.deps import Db, ReadDb, ReadKey, WriteKey
from aicrm.api.problems import responses
from aicrm.api.routes._common import Cursor, invalid, json_response, page_response
from aicrm.crm import activities, session
from aicrm.crm.timeline import MAX_PAGE

router = APIRouter(tags=["activities"])

__all__ = ["router"]

RecordId = Annotated[uuid.UUID, Path(description="The record's id.")]
ActivityId = Annotated[uuid.UUID, Path(description="The activity's id.")]
KindFilter = Annotated[schemas.Kind | None, Query(description="Only this kind.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Entries per page.")]
TimelineCursor = Annotated[
    str | None,
    Query(max_length=300, description="The `next_cursor` of the previous page."),
]


@router.post(
    "/activities",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Activity,
    responses=responses(401, 403, 404, 422),
)
def add_activity(body: schemas.ActivityCreate, conn: Db, key: WriteKey) -> Response:
    """Log a note, call, email, meeting or task on exactly one lead, client or contact
    (404 when it does not exist). Its author is the API key's name. Only a task has a
    due date and an assignee."""
    with session.transaction(conn, key.name):
        activity = activities.add_activity(conn, **body.model_dump())
    return json_response(activity.to_dict(), 201, {"Location": f"/api/activities/{activity.id}"})


@router.get(
    "/activities/{activity_id}",
    response_model=schemas.Activity,
    responses=responses(401, 403, 404, 422),
)
def get_activity(activity_id: ActivityId, conn: ReadDb, key: ReadKey) -> Response:
    """One activity."""
    return json_response(activities.get_activity(conn, activity_id).to_dict())


@router.post(
    "/activities/{activity_id}/done",
    response_model=schemas.Activity,
    responses=responses(401, 403, 404, 422),
)
def complete_task(activity_id: ActivityId, conn: Db, key: WriteKey) -> Response:
    """Mark a task done (a done task keeps its first time); 422 for what is not a task."""
    with session.transaction(conn, key.name):
        task = activities.complete_task(conn, activity_id)
    return json_response(task.to_dict())


def _activities(
    conn: ReadDb,
    target: str,
    record_id: uuid.UUID,
    kind: str | None,
    limit: int,
    cursor: str | None,
) -> Response:
    page = activities.list_activities(
        conn, **{f"{target}_id": record_id}, kind=kind, limit=limit, cursor=cursor
    )
    return page_response(page)


@router.get(
    "/leads/{record_id}/activities",
    response_model=schemas.ActivityPage,
    responses=responses(401, 403, 404, 422),
)
def lead_activities(
    record_id: RecordId,
    conn: ReadDb,
    key: ReadKey,
    kind: KindFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """A lead's activities, newest first; cursor-paginated."""
    return _activities(conn, "lead", record_id, kind, limit, cursor)


@router.get(
    "/clients/{record_id}/activities",
    response_model=schemas.ActivityPage,
    responses=responses(401, 403, 404, 422),
)
def client_activities(
    record_id: RecordId,
    conn: ReadDb,
    key: ReadKey,
    kind: KindFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """A client's activities (those of its converted leads included), newest first."""
    return _activities(conn, "client", record_id, kind, limit, cursor)


@router.get(
    "/contacts/{record_id}/activities",
    response_model=schemas.ActivityPage,
    responses=responses(401, 403, 404, 422),
)
def contact_activities(
    record_id: RecordId,
    conn: ReadDb,
    key: ReadKey,
    kind: KindFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """A contact's activities, newest first."""
    return _activities(conn, "contact", record_id, kind, limit, cursor)


@router.get(
    "/leads/{record_id}/timeline",
    response_model=schemas.TimelinePage,
    responses=responses(401, 403, 404, 422),
    openapi_extra=SECURITY,
)
async def lead_timeline(
    record_id: RecordId,
    request: Request,
    limit: Limit = 50,
    cursor: TimelineCursor = None,
) -> Response:
    """The lead's activities and field history in one timeline, newest first."""
    return await timelines.page_response(request, "leads", record_id, limit, cursor)


@router.get(
    "/clients/{record_id}/timeline",
    response_model=schemas.TimelinePage,
    responses=responses(401, 403, 404, 422),
    openapi_extra=SECURITY,
)
async def client_timeline(
    record_id: RecordId,
    request: Request,
    limit: Limit = 50,
    cursor: TimelineCursor = None,
) -> Response:
    """The client's activities and field history in one timeline, newest first."""
    return await timelines.page_response(request, "clients", record_id, limit, cursor)


@router.get(
    "/tasks",
    response_model=list[schemas.Activity],
    responses=responses(401, 403, 404, 422),
)
def open_tasks(
    conn: ReadDb,
    key: ReadKey,
    mine: Annotated[
        bool, Query(description="The open tasks of the API key's user (see --user).")
    ] = False,
    assignee: Annotated[
        str | None,
        Query(
            min_length=1, max_length=254, description="The open tasks of this user (email or id)."
        ),
    ] = None,
    limit: Limit = 100,
) -> Response:
    """Open tasks, soonest due first (those without a due date last): the key's user's
    (`mine=true`) or another user's (`assignee`)."""
    if mine == (assignee is not None):
        invalid("mine", "query", "Ask for mine=true or for an assignee, one of the two.")
    who = assignee
    if mine:
        user = apikeys.user_of(conn, key)
        if user is None:
            invalid(
                "mine",
                "query",
                f"The API key {key.name} belongs to no user; create it with --user EMAIL, "
                "or ask for an assignee.",
            )
        who = str(user)
    assert who is not None
    found = activities.open_tasks(conn, who, limit=limit)
    return json_response([task.to_dict() for task in found])
