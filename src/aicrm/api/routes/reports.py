"""/api/reports: the views (lead_conversion_summary, client_lead_history) and the funnel."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response

from aicrm.api import _schemas as schemas
from aicrm.api.deps import ReadDb, ReadKey
from aicrm.api.problems import responses
from aicrm.api.routes._common import json_response
from aicrm.crm import reports

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get(
    "/conversion-summary",
    response_model=list[schemas.SourceConversion],
    responses=responses(401, 403),
)
def conversion_summary(conn: ReadDb, key: ReadKey) -> Response:
    """The view `lead_conversion_summary`: leads and conversions per source, the
    largest source first."""
    return json_response([row.to_dict() for row in reports.conversion_summary(conn)])


@router.get(
    "/client-lead-history/{client_id}",
    response_model=list[schemas.ClientLead],
    responses=responses(401, 403, 404, 422),
)
def client_lead_history(
    client_id: Annotated[uuid.UUID, Path(description="The client's id.")],
    conn: ReadDb,
    key: ReadKey,
) -> Response:
    """The view `client_lead_history` for one client: the leads that converted to
    it, in conversion order."""
    return json_response([row.to_dict() for row in reports.client_history(conn, client_id)])


@router.get(
    "/status-funnel", response_model=list[schemas.FunnelStage], responses=responses(401, 403)
)
def status_funnel(conn: ReadDb, key: ReadKey) -> Response:
    """Every status: leads that reached it, leads in it now, the drop-off from the
    previous stage, and the median days spent in it."""
    return json_response([row.to_dict() for row in reports.status_funnel(conn)])
