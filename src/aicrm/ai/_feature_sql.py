"""The SQL text of lead features: every built-in feature's expression, the
observations (training, scoring, at creation), the status history and its stages,
and the profiling queries. Only this package's own text: a stored feature spec can
name a built-in feature, never bring SQL (see :mod:`aicrm.ai._features`)."""

from __future__ import annotations

from psycopg import sql

# The statuses a lead can be in before it converts, in funnel order (migration 008's
# table: aicrm's defaults and every custom status).
STATUSES = "SELECT name FROM lead_statuses WHERE category <> 'converted' ORDER BY position, name"

# Built-in features: name -> (kind, SQL over l (lead), o (observation), se (status
# as of t_obs), ct (contacts as of t_obs), lead columns it reads).
BUILTIN: dict[str, tuple[str, sql.SQL, tuple[str, ...]]] = {
    "source": ("category", sql.SQL("nullif(btrim(l.source), '')"), ("source",)),
    "email_kind": (
        "category",
        sql.SQL(
            "CASE WHEN l.email IS NULL OR btrim(l.email) = '' THEN NULL "
            "WHEN lower(split_part(l.email, '@', 2)) = ANY(%(disposable_mail)s::text[]) "
            "THEN 'disposable' "
            "WHEN lower(split_part(l.email, '@', 2)) = ANY(%(free_mail)s::text[]) THEN 'free' "
            "ELSE 'company' END"
        ),
        ("email",),
    ),
    "has_company": (
        "binary",
        sql.SQL("(coalesce(btrim(l.company_name), '') <> '')::int"),
        ("company_name",),
    ),
    "has_name": (
        "binary",
        sql.SQL(
            "(coalesce(btrim(l.first_name), '') <> '' "
            "AND coalesce(btrim(l.last_name), '') <> '')::int"
        ),
        ("first_name", "last_name"),
    ),
    "contacts": ("numeric", sql.SQL("ct.n"), ()),
    "decision_makers": ("numeric", sql.SQL("ct.dm"), ()),
    "age_days": (
        "numeric",
        sql.SQL("greatest(extract(epoch FROM o.t_obs - l.created_at) / 86400.0, 0)"),
        ("created_at",),
    ),
    "status": ("category", sql.SQL("se.status"), ("status",)),
    "status_changes": ("numeric", sql.SQL("se.n_changes"), ()),
    "days_in_status": (
        "numeric",
        sql.SQL("greatest(extract(epoch FROM o.t_obs - se.last_at) / 86400.0, 0)"),
        ("created_at",),
    ),
    "reached_contacted": ("binary", sql.SQL("se.contacted::int"), ()),
    "reached_qualified": ("binary", sql.SQL("se.qualified::int"), ()),
    "was_disqualified": ("binary", sql.SQL("se.disqualified::int"), ()),
}
# The built-in features read from the activities (ac: ACTIVITY_COUNTS), as of t_obs. The
# ACTIVITY_COUNTS join is added to a query only when its spec names one of them (models
# trained before they existed read none).
ENGAGEMENT_FEATURES: dict[str, tuple[str, sql.SQL, tuple[str, ...]]] = {
    "calls_14d": ("numeric", sql.SQL("coalesce(ac.calls_14d, 0)"), ()),
    "calls_90d": ("numeric", sql.SQL("coalesce(ac.calls_90d, 0)"), ()),
    "emails_14d": ("numeric", sql.SQL("coalesce(ac.emails_14d, 0)"), ()),
    "emails_90d": ("numeric", sql.SQL("coalesce(ac.emails_90d, 0)"), ()),
    "meetings_14d": ("numeric", sql.SQL("coalesce(ac.meetings_14d, 0)"), ()),
    "meetings_90d": ("numeric", sql.SQL("coalesce(ac.meetings_90d, 0)"), ()),
    "notes_14d": ("numeric", sql.SQL("coalesce(ac.notes_14d, 0)"), ()),
    "notes_90d": ("numeric", sql.SQL("coalesce(ac.notes_90d, 0)"), ()),
    # NULL (missing) when nothing was logged by t_obs, "no activity yet" (not greatest(…,
    # 0): it would turn that NULL into 0); last_at is never after t_obs
    "days_since_activity": (
        "numeric",
        sql.SQL("extract(epoch FROM o.t_obs - ac.last_at) / 86400.0"),
        (),
    ),
    "overdue_tasks": ("numeric", sql.SQL("coalesce(ac.overdue_tasks, 0)"), ()),
}
BUILTIN |= ENGAGEMENT_FEATURES
ENGAGEMENT = frozenset(ENGAGEMENT_FEATURES)
HAS_ACTIVITIES = "SELECT to_regclass('activities') IS NOT NULL"


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

# The stage each status stands for, from ``lead_statuses`` (migration 008), so that
# custom statuses count as what their category and place in the funnel say:
# *contacted* is any open status after 'new' (after the first open status when 'new'
# was removed),
# *qualified* any open status from 'qualified' on (from the last open status when
# 'qualified' was removed), *lost* any status of category lost.
STATUS_STAGES = """
stage AS (
    SELECT s.name,
           s.category = 'open' AND s.position > b.entry AS contacted,
           s.category = 'open' AND s.position >= coalesce(b.qualified, b.last_open) AS qualified,
           s.category = 'lost' AS lost
    FROM lead_statuses s
    CROSS JOIN (
        SELECT coalesce(min(position) FILTER (WHERE name = 'new'),
                        min(position) FILTER (WHERE category = 'open')) AS entry,
               max(position) FILTER (WHERE category = 'open') AS last_open,
               min(position) FILTER (WHERE name = 'qualified') AS qualified
        FROM lead_statuses
    ) AS b
)"""

FEATURE_ROWS = """
SELECT o.lead_id, o.label, o.landmark, {columns}
FROM obs o
JOIN leads l ON l.id = o.lead_id
LEFT JOIN ev ON ev.lead_id = o.lead_id
LEFT JOIN stage gi ON gi.name = ev.inserted
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE u.s <> 'converted') AS n_changes,
           max(u.a) FILTER (WHERE u.s <> 'converted') AS last_at,
           (array_agg(u.s ORDER BY u.i DESC) FILTER (WHERE u.s <> 'converted'))[1] AS last_status,
           coalesce(bool_or(g.contacted), false) AS contacted,
           coalesce(bool_or(g.qualified), false) AS qualified,
           coalesce(bool_or(g.lost), false) AS disqualified
    FROM unnest(ev.at, ev.st) WITH ORDINALITY AS u (a, s, i)
    LEFT JOIN stage g ON g.name = u.s
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
                THEN s1.contacted OR coalesce(gi.contacted, false)
           END AS contacted,
           CASE WHEN kn.known
                THEN s1.qualified OR coalesce(gi.qualified, false) END AS qualified,
           CASE WHEN kn.known
                THEN s1.disqualified OR coalesce(gi.lost, false)
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
{activity}"""

# A lead's activities as they stood at t_obs (migration 012). Each counts only from its
# created_at on, and a task is done only from its done_at on: no row sees what was
# logged after it. A converted lead's activities moved to its client (012's conversion
# trigger): they are found there, as the client's activities logged before the client
# existed and not before the lead did. A client's own activities (logged once it
# existed) are never the lead's: on a conversion into an older client the lead's moved
# activities cannot be told from the client's and are left out rather than guessed.
# Counted by one grouped join over every observation (lead, t_obs: a lead's observations
# have distinct moments), not a lateral subquery per observation: the same values in
# about a fifth less time when all leads are read; one lead's are read by its indexes.
ACTIVITY_COUNTS = """,
act AS (
    SELECT a.lead_id, a.t_obs,
           count(*) FILTER (WHERE a.kind = 'call' AND a.created_at > a.t_obs - interval '14 days')
               AS calls_14d,
           count(*) FILTER (WHERE a.kind = 'call' AND a.created_at > a.t_obs - interval '90 days')
               AS calls_90d,
           count(*) FILTER (WHERE a.kind = 'email' AND a.created_at > a.t_obs - interval '14 days')
               AS emails_14d,
           count(*) FILTER (WHERE a.kind = 'email' AND a.created_at > a.t_obs - interval '90 days')
               AS emails_90d,
           count(*) FILTER (WHERE a.kind = 'meeting'
                              AND a.created_at > a.t_obs - interval '14 days') AS meetings_14d,
           count(*) FILTER (WHERE a.kind = 'meeting'
                              AND a.created_at > a.t_obs - interval '90 days') AS meetings_90d,
           count(*) FILTER (WHERE a.kind = 'note' AND a.created_at > a.t_obs - interval '14 days')
               AS notes_14d,
           count(*) FILTER (WHERE a.kind = 'note' AND a.created_at > a.t_obs - interval '90 days')
               AS notes_90d,
           max(greatest(a.created_at, CASE WHEN a.done_at <= a.t_obs THEN a.done_at END))
               AS last_at,
           count(*) FILTER (WHERE a.kind = 'task' AND a.due_at < a.t_obs
                              AND (a.done_at IS NULL OR a.done_at > a.t_obs)) AS overdue_tasks
    FROM (
        SELECT o.lead_id, o.t_obs, a.kind, a.created_at, a.due_at, a.done_at
        FROM obs o JOIN activities a ON a.lead_id = o.lead_id AND a.created_at <= o.t_obs
        UNION ALL
        SELECT o.lead_id, o.t_obs, a.kind, a.created_at, a.due_at, a.done_at
        FROM obs o
        JOIN leads l ON l.id = o.lead_id
        JOIN clients cl ON cl.id = l.converted_to_client_id
        JOIN activities a ON a.client_id = cl.id
        WHERE a.created_at <= o.t_obs AND a.created_at < cl.created_at
          AND a.created_at >= l.created_at
    ) a
    GROUP BY a.lead_id, a.t_obs
)"""
ACTIVITY_JOIN = "LEFT JOIN act ac ON ac.lead_id = o.lead_id AND ac.t_obs = o.t_obs\n"

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


# Where a lead's row lies in the table (block · 2^16 + line): scores are written back
# in this order, so that the UPDATE visits each page of leads once, in turn.
POSITION = "((l.ctid::text::point)[0] * 65536 + (l.ctid::text::point)[1])::float8"


FEATURE_QUERY = "WITH {obs},\n{events},\n{stages}{activity}\n{rows}"
ORDERED = " ORDER BY o.lead_id, o.landmark"

BY_IDS = "l.id = ANY(%(lead_ids)s::uuid[])"
# open: of category open (a converted or lost lead has an outcome, aicrm.ai.closed)
OPEN_ONLY = "l.status IN (SELECT s.name FROM lead_statuses s WHERE s.category = 'open')"

# A lead's status at %(as_of)s, from the history alone, and since when (a subquery over
# ``leads l``, one row): the last status change by then (or the recorded creation),
# else what the first change after it changed from; NULL when the history does not
# say (an upgraded database's lead: no status is read into the past). ``at`` is NULL
# when the status comes from a later change.
STATUS_AT = """
SELECT coalesce(b.status, a.status) AS status, b.at
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT CASE h.operation WHEN 'insert' THEN h.changes ->> 'status'
                ELSE h.changes -> 'status' ->> 1 END AS status,
           h.changed_at AS at
    FROM crm_history h
    WHERE h.table_name = 'leads' AND h.row_id = l.id AND h.changed_at <= %(as_of)s
      AND ((h.operation = 'update' AND h.changes ? 'status')
           OR (h.operation = 'insert' AND NOT h.reconstructed))
    ORDER BY h.changed_at DESC, h.id DESC LIMIT 1
) AS b ON true
LEFT JOIN LATERAL (
    SELECT h.changes -> 'status' ->> 0 AS status
    FROM crm_history h
    WHERE h.table_name = 'leads' AND h.row_id = l.id AND h.changed_at > %(as_of)s
      AND h.operation = 'update' AND h.changes ? 'status'
    ORDER BY h.changed_at, h.id LIMIT 1
) AS a ON true
"""
# open at %(as_of)s: created by then, not converted by then, and not of a closed
# status then as far as the history dates it (aicrm ai score --as-of)
# ({status_at}: STATUS_AT, composed in)
OPEN_AT = """l.created_at <= %(as_of)s
AND (l.conversion_date IS NULL OR l.conversion_date > %(as_of)s)
AND NOT EXISTS (SELECT 1 FROM ({status_at}) AS st
                JOIN lead_statuses s ON s.name = st.status WHERE s.category <> 'open')"""

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
) AS x WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT %(top_limit)s
"""
