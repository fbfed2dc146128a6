"""/api/users: the users who own leads and clients and are assigned tasks (issue #17)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from aicrm.api import _activity_schemas as schemas
from aicrm.api.deps import AdminKey, Db, ReadDb, ReadKey
from aicrm.api.problems import responses
from aicrm.api.routes._common import json_response
from aicrm.crm import session, users

router = APIRouter(prefix="/users", tags=["users"])

__all__ = ["router"]

UserRef = Annotated[str, Path(max_length=254, description="The user's id or email.")]


@router.get("", response_model=list[schemas.User], responses=responses(401, 403, 422))
def list_users(
    conn: ReadDb,
    key: ReadKey,
    active: Annotated[bool, Query(description="Only active users.")] = False,
) -> Response:
    """Every user, oldest first."""
    found = users.list_users(conn, include_inactive=not active)
    return json_response([user.to_dict() for user in found])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.User,
    responses=responses(401, 403, 409, 422),
)
def add_user(body: schemas.UserCreate, conn: Db, key: AdminKey) -> Response:
    """Add an active user (needs an admin key); 409 when a user has the email, ignoring
    case."""
    with session.transaction(conn, key.name):
        user = users.add_user(conn, body.name, body.email)
    return json_response(user.to_dict(), 201, {"Location": f"/api/users/{user.id}"})


@router.get("/{user}", response_model=schemas.User, responses=responses(401, 403, 404, 422))
def get_user(user: UserRef, conn: ReadDb, key: ReadKey) -> Response:
    """One user, by id or email."""
    return json_response(users.get_user(conn, user).to_dict())


@router.post(
    "/{user}/deactivate",
    response_model=schemas.User,
    responses=responses(401, 403, 404, 422),
)
def deactivate_user(user: UserRef, conn: Db, key: AdminKey) -> Response:
    """Deactivate a user (needs an admin key): it keeps its records and tasks, and the
    round-robin passes it by."""
    with session.transaction(conn, key.name):
        found = users.deactivate_user(conn, user)
    return json_response(found.to_dict())
