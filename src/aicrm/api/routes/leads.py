"""/api/leads: read, create, convert (more routes follow the same shape)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, EmailStr

from aicrm.api.deps import Db, ReadKey, WriteKey
from aicrm.crm import conversion, leads, session

router = APIRouter(tags=["leads"])


class LeadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: str | None = None
    last_name: str | None = None
    email: EmailStr | None = None
    company_name: str | None = None
    source: str | None = None
    status: str | None = None
    attributes: dict[str, Any] = {}


class ConvertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str | None = None
    overwrite: bool = False
    allow_duplicate: bool = False


def etag(updated_at: Any, record_id: Any) -> str:
    return f'"{record_id}:{updated_at.timestamp()}"'


@router.get("/leads/{lead_id}")
def get_lead(lead_id: str, conn: Db, key: ReadKey, response: Response) -> dict[str, Any]:
    """One lead."""
    lead = leads.get_lead(conn, lead_id)
    response.headers["ETag"] = etag(lead.updated_at, lead.id)
    return lead.to_dict()


@router.post("/leads", status_code=status.HTTP_201_CREATED)
def create_lead(
    body: LeadIn, conn: Db, key: WriteKey, allow_duplicate: bool = False
) -> dict[str, Any]:
    """Create a lead; 409 with the conflicting records when the email exists."""
    values = body.model_dump(exclude_none=True)
    with session.transaction(conn, key.name):
        lead = leads.create_lead(conn, allow_duplicate=allow_duplicate, **values)
    return lead.to_dict()


@router.post("/leads/{lead_id}/convert")
def convert_lead(lead_id: str, body: ConvertIn, conn: Db, key: WriteKey) -> dict[str, Any]:
    """Convert a lead (same semantics and errors as the library)."""
    done = conversion.convert_lead(
        conn, lead_id, client_id=body.client_id, overwrite=body.overwrite,
        allow_duplicate=body.allow_duplicate, actor=key.name,
    )  # fmt: skip
    return done.to_dict()
