"""Engagement factors in plain words: "3 calls in the last 14 days", "no activity for
40 days", "2 overdue tasks" (the features are computed in :mod:`aicrm.ai._feature_sql`,
from the activities as they stood at the moment scored)."""

from __future__ import annotations

import math
import re
from typing import Any

# calls_14d -> ("call", 14): the kind of activity counted and the days looked back
COUNTED = re.compile(r"^(call|email|meeting|note)s_(\d+)d$")


def engagement_words(feature: str, value: Any) -> str | None:
    """The value of an engagement feature in words; None for any other feature (or a
    value that is not a number)."""
    if isinstance(value, bool) or (value is not None and not isinstance(value, int | float)):
        return None
    if value is not None and not math.isfinite(value):
        value = None
    found = COUNTED.match(feature)
    if found:
        kind, days = found.group(1), found.group(2)
        n = 0 if value is None else round(value)
        return f"{_count(n, kind)} in the last {days} days"
    if feature == "days_since_activity":
        if value is None:
            return "no activity yet"
        if value < 1:
            return "activity in the last day"
        return f"no activity for {_count(math.floor(value), 'day')}"
    if feature == "overdue_tasks":
        n = 0 if value is None else round(value)
        return f"{_count(n, 'overdue task')}"
    return None


def _count(n: int, noun: str) -> str:
    if n == 0:
        return f"no {noun}s"
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
