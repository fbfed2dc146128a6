"""Each lead's score trend, read back: the rows the scoring write-back keeps in
``lead_score_history`` (migration 011) whenever a lead's score moved by 0.01 or more
(:data:`aicrm.ai._writeback.TREND_STEP`) or another model scored it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from aicrm.crm import ids
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import NotFound

LEAD_EXISTS = "SELECT 1 FROM leads WHERE id = %s"
HAS_TREND = "SELECT to_regclass('lead_score_history') IS NOT NULL"
POINTS = """
SELECT scored_at, score::float8 AS score, model_version FROM lead_score_history
WHERE lead_id = %s ORDER BY scored_at, id
"""


@dataclass
class Point:
    """One recorded score of a lead."""

    scored_at: datetime
    score: float
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return {"scored_at": self.scored_at.isoformat(), "score": round(self.score, 4),
                "model_version": self.model_version}  # fmt: skip


@translated()
def trend(conn: Connection, lead_id: str) -> list[Point]:
    """The lead's recorded scores, oldest first (empty before its first scoring or on a
    database without migration 011). Raises :class:`NotFound` for an unknown lead and
    :class:`aicrm.errors.InvalidInput` for a malformed id."""
    key = ids.parse(lead_id, "lead id")
    if conn.execute(LEAD_EXISTS, (key,)).fetchone() is None:
        raise NotFound(f"No lead has id {key}.")
    present = conn.execute(HAS_TREND).fetchone()
    if present is None or not present[0]:
        return []
    with conn.cursor(row_factory=class_row(Point)) as cur:
        return cur.execute(POINTS, (key,)).fetchall()


def sparkline(points: list[Point], *, width: int = 160, height: int = 32) -> str:
    """The SVG ``points`` attribute of a polyline through the scores (0 at the bottom,
    1 at the top), evenly spaced: a trend, not a time axis."""
    if not points:
        return ""
    step = width / max(len(points) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{(1 - p.score) * (height - 2) + 1:.1f}" for i, p in enumerate(points)
    )
