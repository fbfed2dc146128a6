"""Lead scores and their explanations (:mod:`aicrm.ai.scoring`).

The AI package is imported on first use: the rest of the API does not need numpy.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from aicrm.api import _schemas as schemas
from aicrm.api.deps import Db, ReadDb, ReadKey, WriteKey
from aicrm.api.problems import responses
from aicrm.api.routes._common import invalid, json_response, utc

router = APIRouter(tags=["ai"])

# The analysis and the explanations do date arithmetic on the moment: keep it sane.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)


def moment(value: datetime | None, field: str) -> datetime | None:
    value = utc(value)
    if value is not None and not EARLIEST <= value <= LATEST:
        invalid(field, "query", "Give a moment between 1900 and 2999.")
    return value


@router.post(
    "/scores",
    response_model=schemas.ScoreResult,
    responses=responses(401, 403, 404, 409, 422),
)
def score_leads(
    conn: Db, read: ReadDb, key: WriteKey, body: schemas.ScoreRequest | None = None
) -> Response:
    """Score leads with the active model (all open leads, or `lead_ids`) and write
    `ai_score` and the `lead_scoring` annotation back; 404 without a model. A converted
    or lost lead gets its outcome instead of a score (`closed` counts them). All open
    leads' features are read on the read replica while it is fresh enough (a lead it
    has not replayed yet is scored next time), named leads' on the primary; the model
    and the write-back are the primary's."""
    from aicrm.ai import scoring

    body = body or schemas.ScoreRequest()
    ids = [str(i) for i in body.lead_ids] if body.lead_ids is not None else None
    result = scoring.score(conn, lead_ids=ids, include_converted=body.include_converted,
                           actor=key.name, read=read if ids is None else None)  # fmt: skip
    return json_response(result.to_dict())


@router.get(
    "/leads/{lead_id}/explanation",
    response_model=schemas.Explanation,
    responses=responses(401, 403, 404, 409, 422),
)
def explain_lead(
    lead_id: Annotated[uuid.UUID, Path(description="The lead's id.")],
    conn: Db,
    key: ReadKey,
    as_of: Annotated[
        datetime | None, Query(description="Explain the score at this moment.")
    ] = None,
) -> Response:
    """Why the active model gives the lead its score: each factor's contribution,
    largest first; 404 for an unknown lead or without a model."""
    from aicrm.ai import scoring

    explanation = scoring.explain(conn, str(lead_id), as_of=moment(as_of, "as_of"))
    return json_response(explanation.to_dict())


@router.get(
    "/leads/{lead_id}/scores",
    response_model=schemas.ScoreTrend,
    responses=responses(401, 403, 404, 422),
)
def score_trend(
    lead_id: Annotated[uuid.UUID, Path(description="The lead's id.")], conn: Db, key: ReadKey
) -> Response:
    """The lead's score trend: each recorded score, oldest first (a point is kept when
    the score moved by 0.01 or more, or another model scored it); 404 for an unknown
    lead."""
    from aicrm.ai import trend

    points = trend.trend(conn, str(lead_id))
    return json_response({"lead_id": str(lead_id), "points": [p.to_dict() for p in points]})


@router.get(
    "/analysis",
    response_model=schemas.Analysis,
    responses=responses(401, 403, 409, 422),
)
def analysis(
    conn: ReadDb,
    key: ReadKey,
    horizon: Annotated[
        int, Query(ge=1, le=3650, description="Days a lead has to convert to count as converted.")
    ] = 90,
    recent_days: Annotated[
        int, Query(ge=1, le=3650, description="The recent window compared with the past.")
    ] = 90,
    as_of: Annotated[datetime | None, Query(description="Analyse as of this moment.")] = None,
) -> Response:
    """The conversion-pattern analysis, as JSON: rates by source, industry and monthly
    cohort (with 95 % intervals), time to convert, the funnel, the drivers, and the
    segments whose rate changed; 409 for a CRM without leads."""
    from aicrm.ai import analysis as analysis_

    report = analysis_.analyze(conn, horizon=horizon, recent_days=recent_days,
                               as_of=moment(as_of, "as_of"))  # fmt: skip
    return json_response(report.to_dict())
