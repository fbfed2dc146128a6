"""/api/ping (a constant, for health checks and benchmarks) and /api/keys (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from aicrm import apikeys
from aicrm.api import _schemas as schemas
from aicrm.api.auth import SECURITY, check_key
from aicrm.api.deps import AdminKey, Db
from aicrm.api.problems import responses
from aicrm.api.routes._common import json_response
from aicrm.crm import session

router = APIRouter()

PONG = b'{"ok":true}'


@router.get("/ping", response_model=schemas.Ping, tags=["meta"])
async def ping() -> Response:
    """A constant answer, without a key or the database: is the server up?"""
    return Response(PONG, media_type="application/json")


@router.get(
    "/ping/key",
    response_model=schemas.Ping,
    responses=responses(401),
    tags=["meta"],
    openapi_extra=SECURITY,
)
async def ping_key(request: Request) -> Response:
    """The same constant answer, after checking the API key (any scope): does my key
    work? One indexed read of the key; nothing else."""
    await check_key(request)
    return Response(PONG, media_type="application/json")


@router.get(
    "/keys",
    response_model=list[schemas.ApiKey],
    responses=responses(401, 403),
    tags=["api keys"],
)
def list_keys(conn: Db, key: AdminKey) -> Response:
    """Every API key, revoked ones included (never their secrets, which are not kept)."""
    return json_response([k.to_dict() for k in apikeys.list_keys(conn)])


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.ApiKeyCreated,
    responses=responses(401, 403, 409, 422),
    tags=["api keys"],
)
def create_key(body: schemas.ApiKeyCreate, conn: Db, key: AdminKey) -> Response:
    """Create a key; the response holds its token, shown this once."""
    with session.transaction(conn, key.name):
        made, token = apikeys.create_key(conn, body.name, body.scope)
    return json_response(made.to_dict() | {"token": token}, 201)


@router.delete(
    "/keys/{name}",
    response_model=schemas.ApiKey,
    responses=responses(401, 403, 404, 422),
    tags=["api keys"],
)
def revoke_key(
    name: Annotated[str, Path(max_length=64, description="The key's name.")],
    conn: Db,
    key: AdminKey,
) -> Response:
    """Revoke a key: it is refused (401) from now on."""
    with session.transaction(conn, key.name):
        revoked = apikeys.revoke_key(conn, name)
    return json_response(revoked.to_dict())
