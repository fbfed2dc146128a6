"""Calibration on replays of past days: the scores of open leads "today" made honest.

The model is fit on observations at creation and at a few landmarks; the leads scored
today are every open lead, of any age. :func:`calibrate` replays past days: on each
of :data:`REPLAYS` dates (the newest whose horizon has passed, then a month apart) it
scores the leads that were open then, as of that date (the features known then, the
status from the history), and compares with what they did within the horizon. A
Platt scaling of the model's log-odds, ``logit(p') = a·logit(p) + b``, is fit on the
older replays and judged on the newest one: the reliability per decile is stored
(``params.replay``) and :func:`aicrm.ai._prediction.predict` applies ``a`` and ``b``,
which keep each score's split into per-feature contributions exact (each contribution
times ``a``; the bias ``a·bias + b``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from aicrm.ai._features import scoring_frame
from aicrm.ai._model import calibration_error, calibration_table
from aicrm.ai._prediction import logits, predict, recalibrate
from aicrm.ai._store import StoredModel
from aicrm.db import Connection
from aicrm.db.errors import translated

REPLAYS = 6  # past dates replayed
STEP_DAYS = 30  # between them
MIN_REPLAYED = 200  # observations the fit needs, and conversions on each side
MIN_EVENTS = 20

# The leads open on a past day, with their outcome within the horizon after it. A lead
# lost since counts as lost on that day only when the history dates its last status
# change at or before it (without a history it may still have been open).
OPEN_ON = """
SELECT l.id::text,
       coalesce(l.conversion_date <= %(day)s + make_interval(days => %(horizon)s), false)
FROM leads l JOIN lead_statuses s ON s.name = l.status
WHERE l.created_at <= %(day)s AND l.created_at >= %(since)s
  AND (l.conversion_date IS NULL OR l.conversion_date > %(day)s)
  AND NOT (s.category = 'lost' AND coalesce((
      SELECT max(h.changed_at) FROM crm_history h
      WHERE h.table_name = 'leads' AND h.row_id = l.id AND h.changes ? 'status'
  ) <= %(day)s, false))
"""

FloatArray = npt.NDArray[np.float64]


@dataclass
class Replayed:
    """The model's scores of the leads open on each replayed day, and what they did."""

    days: list[datetime]
    scores: list[FloatArray]
    labels: list[npt.NDArray[np.int8]]


@translated()
def replay(conn: Connection, stored: StoredModel, *, as_of: datetime, since: datetime) -> Replayed:
    """Score the leads open on each of :data:`REPLAYS` past days as of that day."""
    newest = as_of - timedelta(days=stored.horizon)
    found = Replayed([], [], [])
    for k in range(REPLAYS):
        day = newest - timedelta(days=STEP_DAYS * k)
        params = {"day": day, "horizon": int(stored.horizon), "since": since}
        outcome: dict[str, bool] = dict(conn.execute(OPEN_ON, params).fetchall())
        if day < since or not outcome:
            break
        frame = scoring_frame(
            conn, stored.features, as_of=day, lead_ids=list(outcome), include_converted=True
        )
        pred = predict(stored, frame, check=False, replayed=False)
        found.days.append(day)
        found.scores.append(pred.scores)
        found.labels.append(np.array([outcome[i] for i in frame.lead_ids], dtype=np.int8))
    return found


@translated()
def calibrate(
    conn: Connection, stored: StoredModel, *, as_of: datetime, since: datetime
) -> tuple[dict[str, Any] | None, str | None]:
    """The replay calibration to store in ``params.replay`` (or None) and a note when
    there were too few replays to fit one."""
    found = replay(conn, stored, as_of=as_of, since=since)
    if len(found.days) < 2:
        return None, "Too few past days to replay for calibrating today's scores."
    fit_p = np.concatenate(found.scores[1:])
    fit_y = np.concatenate(found.labels[1:])
    events = int(fit_y.sum())
    if len(fit_y) < MIN_REPLAYED or min(events, len(fit_y) - events) < MIN_EVENTS:
        return None, (
            f"Today's scores are not recalibrated: the replayed past days have "
            f"{len(fit_y)} open leads and {events} conversions (at least {MIN_REPLAYED} "
            f"and {MIN_EVENTS} on each side are needed)."
        )
    a, b = platt(logits(fit_p), fit_y)
    if a <= 0:
        return None, "Today's scores are not recalibrated: the replays do not rank leads."
    newest_p, newest_y = found.scores[0], found.labels[0]
    before = calibration_table(newest_y, newest_p)
    after = calibration_table(newest_y, recalibrate(newest_p, a, b))
    return {
        "platt": [round(a, 6), round(b, 6)],
        "days": [d.isoformat() for d in found.days],
        "observations": int(sum(len(y) for y in found.labels)),
        "judged_on": found.days[0].isoformat(),
        "reliability": after,
        "reliability_before": before,
        "calibration_error": round(calibration_error(after), 4),
        "calibration_error_before": round(calibration_error(before), 4),
    }, None


def platt(z: FloatArray, y: npt.NDArray[np.int8]) -> tuple[float, float]:
    """``a``, ``b`` of ``P(y) = σ(a·z + b)`` by maximum likelihood (Newton steps)."""
    a, b = 1.0, 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(a * z + b)))
        w = np.maximum(p * (1 - p), 1e-12)
        g = np.array([np.sum((p - y) * z), np.sum(p - y)])
        h = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]])
        h += np.eye(2) * 1e-6
        step = np.linalg.solve(h, g)
        a, b = a - float(step[0]), b - float(step[1])
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return a, b
