"""/api/assignment-rules: who new leads without an owner go to, in turn (issue #17).

A thin layer over :mod:`aicrm.crm.users`' rules, like ``aicrm users rule``: reading
needs a read key, changing an admin key (the rules decide who gets the work).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from aicrm.api import _activity_schemas as schemas
from aicrm.api.deps import AdminKey, Db, ReadDb, ReadKey
from aicrm.api.problems import responses
from aicrm.api.routes._common import json_response
from aicrm.crm import session, users

router = APIRouter(prefix="/assignment-rules", tags=["users"])

__all__ = ["router"]

# A rule's id is a bigint identity: anything larger is no rule (404, not a 500).
RuleId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The rule's id.")]


@router.get("", response_model=list[schemas.AssignmentRule], responses=responses(401, 403, 422))
def list_rules(conn: ReadDb, key: ReadKey) -> Response:
    """The assignment rules, the one for any source first."""
    return json_response([rule.to_dict() for rule in users.list_rules(conn)])


@router.post(
    "",
    response_model=schemas.AssignmentRule,
    responses={
        201: {"description": "Created", "model": schemas.AssignmentRule},
        **responses(401, 403, 422),
    },
)
def set_rule(body: schemas.AssignmentRuleCreate, conn: Db, key: AdminKey) -> Response:
    """Create the rule for a source (201), or replace it (200: its users change, its
    turn goes on), as ``aicrm users rule set`` does; needs an admin key. 422 for an
    unknown user."""
    with session.transaction(conn, key.name):
        existed = users.find_rule(conn, body.source) is not None
        rule = users.set_rule(conn, body.source, body.users)
    if existed:
        return json_response(rule.to_dict())
    return json_response(rule.to_dict(), 201, {"Location": f"/api/assignment-rules/{rule.id}"})


@router.delete(
    "/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(401, 403, 404, 422),
)
def delete_rule(rule_id: RuleId, conn: Db, key: AdminKey) -> Response:
    """Remove a rule (needs an admin key): leads of its source then fall to the rule
    for any source, if there is one."""
    with session.transaction(conn, key.name):
        users.delete_rule(conn, rule_id)
    return Response(status_code=204)
