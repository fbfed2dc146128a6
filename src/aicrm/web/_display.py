"""Values as the dashboard's pages show them: formatted by what they ARE, never by
how a string looks.

A timestamp column's value is a ``datetime`` on a record, or an ISO string inside
the history (whose ``changes`` are JSON); :func:`shown` formats a string as a time
only when its column is a timestamp column (:data:`TIME_COLUMNS`, from the records'
own field types) and it parses as one. Free text that happens to look like a date
(``"2026-01-01Tnot-a-date-at-all"``) is shown as the text it is.

Annotations are written by any annotator, so :func:`factors` accepts any JSON and
keeps what it can show: a label, a value, and a finite numeric contribution or none.
Every function here returns text for any input and never raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aicrm.crm.records import Client, Contact, Lead

MISSING = "—"

# The columns whose type is a timestamp, read from the records' field types.
TIME_COLUMNS = frozenset(
    field.name
    for cls in (Lead, Client, Contact)
    for field in dataclasses.fields(cls)
    if "datetime" in str(field.type)
)


def when(value: Any, with_time: bool = True) -> str:
    """A moment in UTC (``2026-01-05 10:00 UTC``); a string that is not one is shown
    as it is, anything empty as a dash."""
    if value is None or value == "":
        return MISSING
    moment: datetime
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 or 9999 near the edge of the range
        return moment.isoformat()
    return moment.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")


def score(value: Any) -> str:
    """A 0..1 score as a whole percentage; a dash when there is none (or no number)."""
    if not _finite(value) or not -1e6 < float(value) < 1e6:
        return MISSING
    return f"{round(float(value) * 100)}"


def odds(log_odds: Any) -> str:
    """A factor's effect as an odds multiplier: ×1.52 raises, ×0.66 lowers."""
    if not _finite(log_odds):
        return MISSING
    multiplier = math.exp(max(min(float(log_odds), 709.0), -745.0))
    return f"×{multiplier:.2f}" if 0.01 <= multiplier < 1000 else f"×{multiplier:.3g}"


def shown(value: Any, column: str | None = None) -> str:
    """Any JSON value (or column value) as short text; a string is a time only in a
    timestamp ``column``."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.0f}" if value.is_integer() else f"{value:.2f}"
    if isinstance(value, datetime) or (column in TIME_COLUMNS and isinstance(value, str)):
        return when(value)
    return str(value)


def updates(changes: Any) -> list[tuple[str, Any, Any]]:
    """An update's ``{column: [old, new]}`` as (column, old, new); anything else is
    left out (the history is JSON: a hand-written row could hold anything)."""
    if not isinstance(changes, Mapping):
        return []
    return [
        (str(column), pair[0], pair[1])
        for column, pair in changes.items()
        if isinstance(pair, list | tuple) and len(pair) == 2
    ]


def factors(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``factors`` of a scoring entry's ``values`` ready to show: each with a
    ``label`` (text), a ``value``, a ``contribution`` that is a finite float or
    None, and ``words`` (text or None): an engagement factor in plain words, shown
    instead of "label: value" ("3 calls in the last 14 days"). Entries that are not
    factors at all are left out."""
    from aicrm.ai import scoring

    out = []
    for item in scoring.stored_factors(dict(values)):
        contribution = item.get("contribution")
        label = item.get("label") or item.get("feature")
        out.append(
            {
                "label": MISSING if label is None or label == "" else str(label),
                "value": item.get("value"),
                "words": str(item["words"]) if item.get("words") else None,
                "contribution": float(contribution)
                if isinstance(contribution, int | float) and _finite(contribution)
                else None,
            }
        )
    return out


def _finite(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer too large for a float
        return False
