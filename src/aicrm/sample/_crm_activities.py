"""The activities of the CRM generator (:mod:`aicrm.sample.crm`): calls, emails,
meetings, notes and a follow-up task on each lead a rep worked, as migration 012's
``activities`` holds them.

Engagement carries signal, as in real pipelines: a lead that goes on to convert is
called, mailed and met more often, and more of it comes close to the conversion; a
lead that does not convert is worked less, mostly soon after first contact, and then
goes quiet, often with its follow-up task left undone. A rep's diligence (a per-lead
log-normal factor) adds noise that says nothing about the outcome. A converted lead's
activities are on its client, where the conversion moved them (012's trigger), and
each client gets an onboarding meeting after its conversion: an activity no training
row may see. Random numbers as in :mod:`aicrm.sample._crm_sql` (a new draw takes a new
stream number, 120 and up); nothing is dated after ``now``.
"""

from __future__ import annotations

HAS_ACTIVITIES = "SELECT to_regclass('activities') IS NOT NULL"

# Activities per day of a worked lead's span (first contact to its end, or 30 days
# after first contact when it stalls): (kind, stream, rate if it converts, rate if not).
RATES: tuple[tuple[str, int, float, float], ...] = (
    ("call", 1, 0.18, 0.05),
    ("email", 2, 0.20, 0.08),
    ("meeting", 3, 0.05, 0.01),
    ("note", 4, 0.08, 0.03),
)

# Each worked lead's span and how many of each kind it gets (u(no, 120 + k)).
STAGE_ACTIVITIES = """
CREATE TEMP TABLE aicrm_gen_activity ON COMMIT DROP AS
WITH span AS (
    SELECT l.no, l.id AS lead_id, l.client_id, l.converted, l.ended_at,
           l.end_status = 'converted' AND l.ended_at IS NOT NULL AS converts,
           l.contacted_at AS s,
           coalesce(l.ended_at, l.contacted_at + interval '30 days') AS e,
           exp(0.7 * sqrt(-2 * ln(pg_temp.aicrm_gen_u(l.no, 120)))
                   * cos(2 * pi() * pg_temp.aicrm_gen_u(l.no, 121))) AS diligence
    FROM aicrm_gen_lead AS l
    WHERE l.contacted_at <= %(now)s
), counted AS (
    SELECT p.*, r.kind, r.k,
           least(40, floor(CASE WHEN p.converts THEN r.yes ELSE r.no_rate END
                           * greatest(extract(epoch FROM p.e - p.s) / 86400.0, 0)
                           * p.diligence + pg_temp.aicrm_gen_u(p.no, 121 + r.k)))::int AS n
    FROM span AS p
    CROSS JOIN unnest(%(act_kinds)s::text[], %(act_streams)s::int[], %(act_yes)s::float8[],
                      %(act_no)s::float8[]) AS r (kind, k, yes, no_rate)
)
SELECT c.no, c.lead_id, c.client_id, c.converted, c.ended_at, c.kind,
       md5(%(tag)s || '/activity/' || c.no || '/' || c.k || '/' || j)::uuid AS id,
       -- converting: more of it close to the conversion; not: soon after first contact
       c.s + (c.e - c.s) * CASE WHEN c.converts
                                THEN pg_temp.aicrm_gen_u((c.no * 8 + c.k) * 64 + j, 130) ^ 0.7
                                ELSE pg_temp.aicrm_gen_u((c.no * 8 + c.k) * 64 + j, 130) ^ 1.5
                           END AS created_at,
       NULL::timestamptz AS due_at, NULL::timestamptz AS done_at
FROM counted AS c CROSS JOIN LATERAL generate_series(1, c.n) AS j
UNION ALL
-- the follow-up task, set at first contact on 60 %% of worked leads: done by nine in
-- ten converting leads, by four in ten of the others, before or a little after its due
-- date (not done yet when that lies after now)
SELECT p.no, p.lead_id, p.client_id, p.converted, p.ended_at, 'task',
       md5(%(tag)s || '/activity/' || p.no || '/task')::uuid, p.s,
       p.s + (2 + 7 * pg_temp.aicrm_gen_u(p.no, 124)) * interval '1 day',
       CASE WHEN pg_temp.aicrm_gen_u(p.no, 125) < CASE WHEN p.converts THEN 0.9 ELSE 0.4 END
       THEN p.s + (1 + 9 * pg_temp.aicrm_gen_u(p.no, 126)) * interval '1 day' END
FROM span AS p
WHERE pg_temp.aicrm_gen_u(p.no, 123) < 0.6
"""

# The rows: on the lead, or on its client when it converted by now; the onboarding
# meeting on each client, after its conversion. updated_at as the application leaves
# it (a moved activity was updated by the conversion; a done task when done).
INSERT_ACTIVITIES = """
INSERT INTO activities (id, kind, subject, due_at, done_at, author, lead_id, client_id,
                        created_at, updated_at)
SELECT x.id, x.kind, x.subject, x.due_at, x.done_at, %(actor)s,
       CASE WHEN NOT x.on_client THEN x.lead_id END, CASE WHEN x.on_client THEN x.client_id END,
       x.created_at, greatest(x.created_at, x.done_at, CASE WHEN x.on_client THEN x.ended_at END)
FROM (
    SELECT a.id, a.kind, a.lead_id, a.client_id, a.ended_at, a.created_at, a.due_at,
           CASE WHEN a.done_at <= %(now)s THEN a.done_at END AS done_at,
           a.converted AS on_client,
           CASE a.kind WHEN 'call' THEN 'Call' WHEN 'email' THEN 'Email'
                       WHEN 'meeting' THEN 'Meeting' WHEN 'note' THEN 'Note'
                       ELSE 'Follow up' END AS subject
    FROM aicrm_gen_activity AS a
    WHERE a.created_at <= %(now)s
    UNION ALL
    SELECT md5(%(tag)s || '/activity/' || l.no || '/onboarding')::uuid, 'meeting', NULL,
           l.client_id, NULL, l.ended_at + (1 + 13 * pg_temp.aicrm_gen_u(l.no, 127))
               * interval '1 day', NULL, NULL, true, 'Onboarding'
    FROM aicrm_gen_lead AS l
    WHERE l.converted
) AS x
WHERE x.created_at <= %(now)s
ORDER BY x.created_at, x.id
"""

DROP_ACTIVITIES = "DROP TABLE aicrm_gen_activity"
ANALYZE_ACTIVITIES = "ANALYZE activities"
