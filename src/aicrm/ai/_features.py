"""Features of a lead, as of a moment, from its columns, attributes, contacts and
status history; and the design matrix the models read.

A *feature spec* (a list of :class:`Feature`) is decided when a model is trained
(which sources, attribute keys and categories exist) and stored with the model as
JSON (:mod:`aicrm.ai._feature_spec`). Only data travels from that JSON into SQL
(attribute keys and category lists are parameters); the SQL text of every built-in
feature lives in :mod:`aicrm.ai._feature_sql`, so a spec read back from the database
can name a built-in feature but never inject SQL. This module composes the queries,
reads the frames, and profiles a training set (:func:`discover`).

Every feature is computed *as of* an observation moment ``t_obs``: the status
history, the contacts and the activities (calls, emails, meetings and notes in the 14
and 90 days before, days since the last one, overdue tasks) count only what had
happened by then, so training rows (observed at a lead's creation and at later
landmarks, see :func:`training_observations`) and the leads scored today see the same
kind of information, and no row sees its own outcome.

Rows are read with a binary ``COPY`` whose every column is a non-null float8 (NaN
for missing, category codes for categories), parsed by numpy in one call: a
million leads read in seconds, not minutes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql

# Re-exported: the frame, the design matrix and the spec are read through this module.
from aicrm.ai._encoding import (
    Column as Column,
    Encoding as Encoding,
    encode as encode,
    fit_encoding as fit_encoding,
)
from aicrm.ai._feature_spec import (
    LABELS as LABELS,
    Feature as Feature,
    attribute_expr as attribute_expr,
    builtin_expr as builtin_expr,
    common_params,
    lead_columns_used as lead_columns_used,
    param_name as param_name,
    raw_expr,
)
from aicrm.ai._feature_sql import (
    ACTIVITY_COUNTS,
    ACTIVITY_JOIN,
    ATTRIBUTE_KEYS,
    BUILTIN as BUILTIN,
    BY_IDS,
    CREATION_OBS,
    ENGAGEMENT,
    FEATURE_QUERY,
    FEATURE_ROWS,
    HAS_ACTIVITIES,
    OPEN_AT,
    OPEN_ONLY,
    ORDERED,
    POSITION,
    SCORING_OBS,
    STATUS_AT,
    STATUS_EVENTS,
    STATUS_STAGES,
    STATUSES,
    TOP_VALUES,
    TRAINING_OBS,
)
from aicrm.ai._frames import Frame as Frame, read_frame, stream_frames
from aicrm.ai._window import LABELLED
from aicrm.db import Connection
from aicrm.db.errors import translated

FEATURE_SET = 2  # bump when a built-in feature's meaning changes: old models must retrain
FloatArray = npt.NDArray[np.float64]


def feature_sql(
    obs: sql.Composable,
    features: Sequence[Feature],
    *,
    ordered: bool = True,
    position: bool = False,
) -> tuple[sql.Composable, dict[str, Any]]:
    """The COPY query for ``obs`` (one of the *_OBS templates, composed) and
    ``features`` (with ``position``, one more float8 column: :data:`POSITION`)."""
    params = common_params()
    exprs: list[sql.Composable] = []
    for index, feature in enumerate(features):
        expr, extra = raw_expr(feature, index)
        exprs.append(expr)
        params.update(extra)
    if position:
        exprs.append(sql.SQL(POSITION))
    columns = sql.SQL(",\n       ").join(exprs) if exprs else sql.SQL("0::float8")
    # the activities are read only for a spec that names an engagement feature
    counts, join = sql.SQL(""), sql.SQL("")
    if any(f.key is None and f.name in ENGAGEMENT for f in features):
        counts, join = sql.SQL(ACTIVITY_COUNTS), sql.SQL(ACTIVITY_JOIN)
    rows = sql.SQL(FEATURE_ROWS).format(columns=columns, activity=join)
    query = sql.SQL(FEATURE_QUERY).format(
        obs=obs,
        events=sql.SQL(STATUS_EVENTS),
        stages=sql.SQL(STATUS_STAGES),
        activity=counts,
        rows=rows,
    )
    return (query + sql.SQL(ORDERED) if ordered else query), params


@translated()
def training_frame(
    conn: Connection,
    features: Sequence[Feature],
    *,
    horizon: int,
    as_of: datetime,
    since: datetime,
    landmarks: Sequence[int],
) -> Frame:
    query, params = feature_sql(sql.SQL(TRAINING_OBS), features)
    params |= {"horizon": horizon, "as_of": as_of, "since": since, "landmarks": list(landmarks)}
    frame = read_frame(conn, query, params, len(features))
    if frame.labels is None:
        frame.labels = np.zeros(len(frame), dtype=np.int8)
    return frame


@translated()
def scoring_frame(
    conn: Connection,
    features: Sequence[Feature],
    *,
    as_of: datetime,
    lead_ids: Sequence[str] | None = None,
    include_converted: bool = False,
    open_at: bool = False,
) -> Frame:
    """Features of leads as of ``as_of`` (default: open leads; or the given ids), with
    their positions in the table. ``open_at``: open as of ``as_of`` by the history
    (:data:`OPEN_AT`), not by today's status."""
    where, extra = _where(lead_ids, include_converted, open_at)
    query, params = feature_sql(
        sql.SQL(SCORING_OBS).format(where=where), features, ordered=False, position=True
    )
    params |= extra | {"as_of": as_of}
    return read_frame(conn, query, params, len(features) + 1).with_positions()


def scoring_frames(
    conn: Connection,
    features: Sequence[Feature],
    *,
    as_of: datetime,
    include_converted: bool = False,
    open_at: bool = False,
    rows: int = 65_536,
) -> Iterator[Frame]:
    """:func:`scoring_frame` of every (open) lead, handed out in frames while the COPY
    runs (:func:`stream_frames`)."""
    where, extra = _where(None, include_converted, open_at)
    query, params = feature_sql(
        sql.SQL(SCORING_OBS).format(where=where), features, ordered=False, position=True
    )
    params |= extra | {"as_of": as_of}
    for frame in stream_frames(conn, query, params, len(features) + 1, rows):
        yield frame.with_positions()


@translated()
def creation_frame(
    conn: Connection,
    features: Sequence[Feature],
    *,
    horizon: int,
    lead_ids: Sequence[str] | None = None,
) -> Frame:
    """Features of leads as of their creation, with their within-horizon outcome (for
    evaluation against the truth, e.g. in bench/)."""
    where, extra = _where(lead_ids, True)
    query, params = feature_sql(sql.SQL(CREATION_OBS).format(where=where), features)
    params |= extra | {"horizon": horizon}
    return read_frame(conn, query, params, len(features))


def _where(
    lead_ids: Sequence[str] | None, include_converted: bool, open_at: bool = False
) -> tuple[sql.Composable, dict[str, Any]]:
    parts: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if lead_ids is not None:
        parts.append(sql.SQL(BY_IDS))
        params["lead_ids"] = list(lead_ids)
    if not include_converted:
        parts.append(
            sql.SQL(OPEN_AT).format(status_at=sql.SQL(STATUS_AT)) if open_at else sql.SQL(OPEN_ONLY)
        )
    return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")), params


# --- discovering the features of a training set ------------------------------------

# A category keeps every level seen on at least MIN_LEVEL_LEADS labelled leads (up to
# MAX_LEVELS of them): a rare level with a strong effect keeps its own column, and the
# models shrink what few leads show (the logistic model penalises 0/1 columns on their
# own scale, so a level seen on 12 leads moves its odds only as far as 12 leads prove;
# the trees need min_samples_leaf leads to split one off). Rarer levels are "(other)".
MIN_LEVEL_LEADS = 10
MAX_LEVELS = 100
MAX_ATTRIBUTES = 40


@translated()
def discover(
    conn: Connection, *, horizon: int, as_of: datetime, since: datetime, n_leads: int
) -> list[Feature]:
    """The feature spec for the leads labelled in this window: built-ins, then every
    attribute key present on at least 5 % of them (numbers and booleans numeric,
    strings categories when a few values cover most leads)."""
    window = {"horizon": horizon, "as_of": as_of, "since": since}
    features: list[Feature] = []
    row = conn.execute(HAS_ACTIVITIES).fetchone()
    activities = bool(row and row[0])
    for name, (kind, _expr, _cols) in BUILTIN.items():
        if name in ENGAGEMENT and not activities:
            continue  # a database before migration 012: no activities to count
        feature = Feature(name, kind)
        if kind == "category":
            if name == "status":
                feature.categories = [str(r[0]) for r in conn.execute(STATUSES).fetchall()]
            elif name == "email_kind":
                feature.categories = ["free", "company", "disposable"]
            else:
                feature.categories = _top(conn, feature, window)
        features.append(feature)
    types: dict[str, dict[str, int]] = {}
    for key, kind, count in conn.execute(
        sql.SQL(ATTRIBUTE_KEYS).format(labelled=LABELLED), window
    ).fetchall():
        types.setdefault(str(key), {})[str(kind)] = int(count)
    minimum = max(1, math.ceil(0.05 * n_leads))
    attrs: list[Feature] = []
    for key, by_type in sorted(types.items(), key=lambda kv: -sum(kv[1].values())):
        present = sum(n for t, n in by_type.items() if t != "null")
        if present < minimum or len(attrs) >= MAX_ATTRIBUTES:
            continue
        numeric = by_type.get("number", 0) + by_type.get("boolean", 0)
        if numeric >= 0.8 * present:
            attrs.append(Feature(f"attr:{key}", "numeric", key=key))
        elif by_type.get("string", 0) >= 0.8 * present:
            feature = Feature(f"attr:{key}", "category", key=key)
            feature.categories = _top(conn, feature, window)
            if feature.categories:
                attrs.append(feature)
    return features + attrs


def _top(conn: Connection, feature: Feature, window: dict[str, Any]) -> list[str]:
    expr: sql.Composable
    if feature.key is not None:
        expr, params = attribute_expr(feature), {param_name(feature): feature.key}
    else:
        expr, params = builtin_expr(feature.name), common_params()
    query = sql.SQL(TOP_VALUES).format(expr=expr, labelled=LABELLED)
    rows = conn.execute(query, params | window | {"top_limit": MAX_LEVELS + 1}).fetchall()
    if not rows:
        return []
    total = sum(int(r[1]) for r in rows)
    chosen = [str(v) for v, c in rows[:MAX_LEVELS] if int(c) >= MIN_LEVEL_LEADS]
    covered = sum(int(c) for v, c in rows if str(v) in chosen)
    if feature.key is not None and (
        not chosen or covered < 0.5 * total or (len(rows) > MAX_LEVELS and covered < 0.8 * total)
    ):
        return []  # an identifier or free text, not a category
    return chosen
