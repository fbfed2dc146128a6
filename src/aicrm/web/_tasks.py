"""The dashboard's "My tasks": the open tasks of the signed-in key's user, soonest due
first (read-only; issue #17). Mounted by :mod:`aicrm.web._pages`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from aicrm import apikeys
from aicrm.api.deps import ReadDb, ReadKey
from aicrm.crm import activities, users
from aicrm.web._render import PageRoute, page

router = APIRouter(include_in_schema=False, route_class=PageRoute)

__all__ = ["router"]


@router.get("/tasks")
def tasks_page(request: Request, conn: ReadDb, key: ReadKey) -> Response:
    """The open tasks of the user the key (the sign-in) belongs to."""
    user_id = apikeys.user_of(conn, key)
    user = users.get_user(conn, user_id) if user_id else None
    found = activities.open_tasks(conn, user.id) if user else []
    return page(request, "tasks.html", user=user, tasks=found)
