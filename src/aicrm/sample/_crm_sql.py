"""The SQL of the CRM generator (:mod:`aicrm.sample.crm`): the staging steps that draw
each lead, its path and its contacts, and the inserts that write them. Every random
number is ``pg_temp.aicrm_gen_u(row, stream)``; a new draw takes a new stream number."""

from __future__ import annotations

from psycopg import sql

from aicrm.crm.conversion import CLIENT_NAME

# Random numbers: a hash of (row, stream) under the seed, uniform in (0, 1). Inlined
# by the planner (a one-line SQL function), so it costs one hash per call.
RANDOM_FUNCTION = sql.SQL("""
CREATE OR REPLACE FUNCTION pg_temp.aicrm_gen_u(n bigint, stream integer)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (((hashint8extended(n, {seed} + stream) >> 11) & 9007199254740991)::float8 + 0.5)
           / 9007199254740992.0
$$
""")

CURRENT_SETTING = "SELECT coalesce(current_setting(%s, true), '')"
SET_LOCAL = "SELECT set_config(%s, %s, true)"

SCHEMA_SHAPE = """
SELECT to_regclass('crm_history') IS NOT NULL AND to_regclass('lead_status_periods') IS NOT NULL
   AND EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
               AND table_name = 'leads' AND column_name = 'converted_to_client_id')
"""

EXISTING_ROWS = """
SELECT (SELECT count(*) FROM leads) + (SELECT count(*) FROM clients)
       + (SELECT count(*) FROM contacts)
"""

SEED_TAKEN = "SELECT EXISTS (SELECT 1 FROM leads WHERE id = md5(%s || '/lead/1')::uuid)"
SERVER_NOW = "SELECT now()"
SET_REPLICATION_ROLE = "SELECT set_config('session_replication_role', %s, true)"
REPLICATION_ROLE = "SELECT current_setting('session_replication_role')"

TRUTH_TABLE = """
CREATE TABLE IF NOT EXISTS sample_truth (
    lead_id uuid PRIMARY KEY REFERENCES leads (id) ON DELETE CASCADE,
    p_convert_90d double precision NOT NULL CHECK (p_convert_90d > 0 AND p_convert_90d < 1),
    p_columns_90d double precision CHECK (p_columns_90d > 0 AND p_columns_90d < 1)
)
"""
# a table made by an older generator: the column added (NULL on its rows)
TRUTH_COLUMNS = """
ALTER TABLE sample_truth ADD COLUMN IF NOT EXISTS p_columns_90d double precision
    CHECK (p_columns_90d > 0 AND p_columns_90d < 1)
"""
TRUTH_COMMENT = """
COMMENT ON TABLE sample_truth IS
    'Ground truth of aicrm.sample.crm: each generated lead''s true probability of converting '
    'within 90 days of its creation (p_columns_90d: the best probability from its columns '
    'alone, the hidden part of its intent integrated out). For evaluating models only: '
    'a model must not read it.'
"""


# Step 1: each lead's features and its true probability. Levels of subqueries, each
# using the columns of the one inside; u(no, k) is the k-th random number of row no.
STAGE_BASE = """
CREATE TEMP TABLE aicrm_gen_base ON COMMIT DROP AS
SELECT g.*,
       1 / (1 + exp(-greatest(-12, least(12, g.z_columns + g.hidden)))) AS p_convert,
       -- the best probability from the columns alone: the hidden part of the intent
       -- integrated out with this lead's own sd (the probit approximation of a
       -- logistic-normal mean)
       1 / (1 + exp(-greatest(-12, least(12, g.z_columns
                  / sqrt(1 + pi() * g.hidden_sd ^ 2 / 8))))) AS p_columns
FROM (
WITH m AS (
    SELECT %(src_names)s::text[] AS src_names, %(src_cum)s::float8[] AS src_cum,
           %(src_eff)s::float8[] AS src_eff, %(src_demo)s::float8[] AS src_demo,
           %(src_touch)s::float8[] AS src_touch,
           %(ind_names)s::text[] AS ind_names, %(ind_cum)s::float8[] AS ind_cum,
           %(ind_eff)s::float8[] AS ind_eff, %(ind_kinds)s::text[] AS ind_kinds,
           %(ctry_names)s::text[] AS ctry_names, %(ctry_cum)s::float8[] AS ctry_cum,
           %(ctry_region)s::text[] AS ctry_region, %(ctry_tld)s::text[] AS ctry_tld,
           %(ctry_eff)s::float8[] AS ctry_eff,
           %(first_names)s::text[] AS first_names, %(last_names)s::text[] AS last_names,
           %(prefixes)s::text[] AS prefixes, %(suffixes)s::text[] AS suffixes,
           %(free_domains)s::text[] AS free_domains, %(campaigns)s::text[] AS campaigns,
           %(src_form)s::float8[] AS src_form, %(tl_names)s::text[] AS tl_names,
           %(tl_cum)s::float8[] AS tl_cum, %(tl_eff)s::float8[] AS tl_eff
)
SELECT f.no, f.id, f.created_at, f.first_name, f.last_name, f.company_name, f.domain,
       f.local, m.src_names[f.src] AS source, m.ind_names[f.ind] AS industry,
       m.ctry_names[f.ctry] AS country, m.ctry_region[f.ctry] AS region, f.employees,
       f.budget, f.demo_requested, f.channel_touches, f.monthly_visits,
       CASE WHEN m.src_names[f.src] IN ('web', 'ads', 'linkedin') THEN
           m.campaigns[1 + floor(pg_temp.aicrm_gen_u(f.no, 27) * cardinality(m.campaigns))::int]
       END AS utm_campaign,
       m.tl_names[f.timeline] AS purchase_timeline,
       %(intercept)s + m.src_eff[f.src] + m.ind_eff[f.ind] + m.ctry_eff[f.ctry]
           + 0.40 - 0.30 * (log(f.employees) - 2.3) ^ 2
           + CASE WHEN f.budget IS NULL THEN %(unknown_budget)s
                  ELSE %(budget_effect)s * (log(f.budget) - 4.5) END
           + CASE WHEN f.demo_requested THEN %(demo_effect)s ELSE 0 END
           + CASE WHEN f.demo_requested AND f.employees >= 200 THEN %(demo_large)s ELSE 0 END
           + %(visits_effect)s * (ln(1 + f.monthly_visits) - 5)
           + CASE WHEN m.src_names[f.src] = 'ads'
                  THEN %(ads_drift)s * (1 - f.age_days / %(history_days)s) ELSE 0 END
           + %(touch_effect)s * ln(1 + f.channel_touches)
           -- the visible part of the intent: the lead's answer to the form's question
           + coalesce(m.tl_eff[f.timeline], 0) AS z_columns,
       -- the hidden part of the intent, N(0, hidden_sd): smaller when the form answer
       -- shows the rest
       CASE WHEN f.timeline IS NULL THEN %(intent_sd)s ELSE %(answer_sd)s END
           * sqrt(-2 * ln(pg_temp.aicrm_gen_u(f.no, 13)))
           * cos(2 * pi() * pg_temp.aicrm_gen_u(f.no, 14)) AS hidden,
       CASE WHEN f.timeline IS NULL THEN %(intent_sd)s ELSE %(answer_sd)s END AS hidden_sd
FROM (
    SELECT d.*,
           -- "When do you plan to buy?" on the web-to-lead form of the sources that have
           -- one (m.src_form: the share of their leads that answer it; 0: no form),
           -- drawn before the intent, which it then shifts
           CASE WHEN pg_temp.aicrm_gen_u(d.no, 43) < m.src_form[d.src]
                THEN width_bucket(pg_temp.aicrm_gen_u(d.no, 44), m.tl_cum) + 1 END AS timeline,
           CASE WHEN pg_temp.aicrm_gen_u(d.no, 9)
                     < CASE WHEN d.demo_requested THEN 0.8 ELSE 0.45 END THEN
               (round(greatest(500, least(2000000, (2000 + d.employees * 150)
                      * exp(0.8 * sqrt(-2 * ln(pg_temp.aicrm_gen_u(d.no, 11)))
                                 * cos(2 * pi() * pg_temp.aicrm_gen_u(d.no, 12)))))
                      / 500) * 500)::int
           END AS budget,
           floor(exp(5 + 1.3 * sqrt(-2 * ln(pg_temp.aicrm_gen_u(d.no, 40)))
                             * cos(2 * pi() * pg_temp.aicrm_gen_u(d.no, 41))))::int
               AS monthly_visits,
           least(30, floor(-m.src_touch[d.src] * CASE WHEN d.demo_requested THEN 1.4 ELSE 1 END
                           * ln(pg_temp.aicrm_gen_u(d.no, 10))))::int AS channel_touches,
           CASE WHEN d.has_company THEN lower(d.prefix || d.suffix || d.kind) || '.' || d.tld
                ELSE m.free_domains[
                    1 + floor(pg_temp.aicrm_gen_u(d.no, 21) * cardinality(m.free_domains))::int]
           END AS domain,
           CASE WHEN d.has_company THEN d.prefix || d.suffix || ' ' || d.kind END AS company_name,
           CASE WHEN NOT d.has_company THEN
                    lower(d.first_name) || '.' || lower(d.last_name)
                    || (10 + floor(pg_temp.aicrm_gen_u(d.no, 22) * 90))::int
                WHEN pg_temp.aicrm_gen_u(d.no, 22) < 0.55 THEN
                    lower(d.first_name) || '.' || lower(d.last_name)
                WHEN pg_temp.aicrm_gen_u(d.no, 22) < 0.75 THEN
                    lower(left(d.first_name, 1) || d.last_name)
                WHEN pg_temp.aicrm_gen_u(d.no, 22) < 0.90 THEN lower(d.first_name)
                ELSE lower(d.first_name) || '_' || lower(d.last_name)
           END AS local,
           least(d.day + (7 + 11 * pg_temp.aicrm_gen_u(d.no, 19)) * interval '1 hour',
                 %(now)s - d.age_days * interval '1 day') AS created_at
    FROM (
        SELECT c.*,
               (string_to_array(c.kinds, '|'))[1 + floor(pg_temp.aicrm_gen_u(c.no, 20)
                   * cardinality(string_to_array(c.kinds, '|')))::int] AS kind,
               pg_temp.aicrm_gen_u(c.no, 8)
                   < m.src_demo[c.src] * CASE WHEN c.employees >= 50 THEN 1.3 ELSE 1 END
                   AS demo_requested,
               -- Fewer leads at weekends: most move back to the Friday before.
               CASE WHEN extract(isodow FROM c.raw_day) > 5
                     AND pg_temp.aicrm_gen_u(c.no, 18) < 0.75
                    THEN c.raw_day - (extract(isodow FROM c.raw_day) - 5) * interval '1 day'
                    ELSE c.raw_day END AS day
        FROM (
            SELECT b.*,
                   date_trunc('day', %(now)s - b.age_days * interval '1 day') AS raw_day
            FROM (
                SELECT i AS no,
                       md5(%(tag)s || '/lead/' || i)::uuid AS id,
                       width_bucket(pg_temp.aicrm_gen_u(i, 1), m.src_cum) + 1 AS src,
                       width_bucket(pg_temp.aicrm_gen_u(i, 2), m.ind_cum) + 1 AS ind,
                       width_bucket(pg_temp.aicrm_gen_u(i, 3), m.ctry_cum) + 1 AS ctry,
                       pg_temp.aicrm_gen_u(i, 4) >= 0.08 AS has_company,
                       CASE WHEN pg_temp.aicrm_gen_u(i, 4) >= 0.08 THEN greatest(2,
                            floor(10 ^ (0.3 + 3.9 * pg_temp.aicrm_gen_u(i, 5) ^ 1.6)))::int
                            ELSE 1 END AS employees,
                       -- Growth: the density of created_at rises linearly to 3x over
                       -- the period (inverse of its CDF), sampled in strata so that
                       -- row order is creation order: no sort needed to insert.
                       %(history_days)s * (1 - (sqrt(1 + 8 * (i - 1 + pg_temp.aicrm_gen_u(i, 17))
                                                     / %(leads)s) - 1) / 2) AS age_days,
                       m.first_names[1 + floor(pg_temp.aicrm_gen_u(i, 23)
                                               * cardinality(m.first_names))::int] AS first_name,
                       m.last_names[1 + floor(pg_temp.aicrm_gen_u(i, 24)
                                              * cardinality(m.last_names))::int] AS last_name,
                       m.prefixes[1 + floor(pg_temp.aicrm_gen_u(i, 25)
                                            * cardinality(m.prefixes))::int] AS prefix,
                       m.suffixes[1 + floor(pg_temp.aicrm_gen_u(i, 26)
                                            * cardinality(m.suffixes))::int] AS suffix,
                       m.ind_kinds[width_bucket(pg_temp.aicrm_gen_u(i, 2), m.ind_cum) + 1]
                           AS kinds,
                       m.ctry_tld[width_bucket(pg_temp.aicrm_gen_u(i, 3), m.ctry_cum) + 1] AS tld
                FROM generate_series(1, %(leads)s::int) AS i CROSS JOIN m
                OFFSET 0
            ) AS b
        ) AS c CROSS JOIN m
        OFFSET 0
    ) AS d CROSS JOIN m
    OFFSET 0
) AS f CROSS JOIN m
) AS g
"""

# Step 2: each lead's path through the funnel (days after created_at; NULL: never),
# cut at now: its status, whether it converted, its email and attributes.
STAGE_LEADS = """
CREATE TEMP TABLE aicrm_gen_lead ON COMMIT DROP AS
SELECT t.*,
       CASE WHEN t.ended_at <= %(now)s THEN t.end_status
            WHEN t.qualified_at <= %(now)s THEN 'qualified'
            WHEN t.contacted_at <= %(now)s THEN 'contacted'
            ELSE 'new' END AS status,
       coalesce(t.end_status = 'converted' AND t.ended_at <= %(now)s, false) AS converted,
       greatest(t.created_at, CASE WHEN t.contacted_at <= %(now)s THEN t.contacted_at END,
                CASE WHEN t.qualified_at <= %(now)s THEN t.qualified_at END,
                CASE WHEN t.ended_at <= %(now)s THEN t.ended_at END) AS updated_at
FROM (
    SELECT w.no, w.id, md5(%(tag)s || '/client/' || w.no)::uuid AS client_id,
           w.created_at, w.first_name, w.last_name, w.company_name, w.domain, w.source,
           CASE WHEN w.source = 'cold_call' AND pg_temp.aicrm_gen_u(w.no, 28) < 0.1 THEN NULL
                ELSE w.local || '@' || w.domain END AS email,
           w.p_convert, w.p_columns,
           jsonb_strip_nulls(jsonb_build_object(
               'industry', w.industry, 'employees', w.employees,
               'company_size', (%(sizes)s::text[])
                   [width_bucket(w.employees, %(size_bounds)s::int[]) + 1],
               'region', w.region, 'country', w.country, 'budget', w.budget,
               'channel_touches', w.channel_touches, 'demo_requested', w.demo_requested,
               'utm_campaign', w.utm_campaign, 'purchase_timeline', w.purchase_timeline,
               'monthly_visits', CASE WHEN pg_temp.aicrm_gen_u(w.no, 42) < 0.5
                   THEN to_jsonb(w.monthly_visits)
                   ELSE to_jsonb(to_char(w.monthly_visits, 'FM999,999,999')) END))
               AS attributes,
           CASE WHEN w.company_name IS NULL THEN 0
                ELSE width_bucket(pg_temp.aicrm_gen_u(w.no, 29), ARRAY[0.62, 0.88, 0.97])
           END AS contacts,
           w.created_at + w.contacted_day * interval '1 day' AS contacted_at,
           w.created_at + w.qualified_day * interval '1 day' AS qualified_at,
           w.created_at + w.end_day * interval '1 day' AS ended_at,
           w.end_status
    FROM (
        SELECT v.*,
               CASE WHEN v.converts THEN v.convert_days * (0.04 + 0.12 * v.u31)
                    WHEN v.path >= 0.24 THEN v.contact_wait END AS contacted_day,
               CASE WHEN v.converts THEN v.convert_days * (0.30 + 0.40 * v.u33)
                    WHEN v.path >= 0.24 AND v.step < v.qualify_chance
                    THEN v.contact_wait + v.qualify_wait END AS qualified_day,
               CASE WHEN v.converts THEN v.convert_days
                    WHEN v.path < 0.06 THEN NULL
                    WHEN v.path < 0.24 THEN 0.5 + 10 * v.u35
                    WHEN v.step < v.qualify_chance THEN
                        CASE WHEN v.u36 < 0.8 THEN v.contact_wait + v.qualify_wait
                                                   + 5 - 20 * ln(v.u37) END
                    WHEN v.after < 0.50 THEN v.contact_wait + 7 - 15 * ln(v.u37)
                    WHEN v.after < 0.80 THEN v.contact_wait + 2 - 8 * ln(v.u37)
               END AS end_day,
               CASE WHEN v.converts THEN 'converted'
                    WHEN v.path < 0.06 THEN NULL
                    WHEN v.path < 0.24 THEN 'unqualified'
                    WHEN v.step < v.qualify_chance THEN
                        CASE WHEN v.u36 < 0.8 THEN 'lost' END
                    WHEN v.after < 0.50 THEN 'lost'
                    WHEN v.after < 0.80 THEN 'unqualified'
               END AS end_status
        FROM (
            SELECT b.*,
                   pg_temp.aicrm_gen_u(b.no, 30) < b.p_convert AS converts,
                   -- Days to convert: log-normal around 9 days, longer for large
                   -- companies, shorter after a demo; always within the window.
                   least(%(window)s - 0.5, greatest(1.0, 9 * (b.employees / 40.0::float8) ^ 0.18
                         * CASE WHEN b.demo_requested THEN 0.75 ELSE 1 END
                         * exp(0.55 * sqrt(-2 * ln(pg_temp.aicrm_gen_u(b.no, 15)))
                                    * cos(2 * pi() * pg_temp.aicrm_gen_u(b.no, 16)))))
                       AS convert_days,
                   pg_temp.aicrm_gen_u(b.no, 38) AS path,
                   pg_temp.aicrm_gen_u(b.no, 39) AS step,
                   -- Leads that will not convert still get qualified more often when
                   -- they looked better.
                   0.12 + 0.6 * b.p_convert AS qualify_chance,
                   (pg_temp.aicrm_gen_u(b.no, 39) - 0.12 - 0.6 * b.p_convert)
                       / (0.88 - 0.6 * b.p_convert) AS after,
                   0.2 - 3 * ln(pg_temp.aicrm_gen_u(b.no, 32)) AS contact_wait,
                   2 - 8 * ln(pg_temp.aicrm_gen_u(b.no, 34)) AS qualify_wait,
                   pg_temp.aicrm_gen_u(b.no, 31) AS u31, pg_temp.aicrm_gen_u(b.no, 33) AS u33,
                   pg_temp.aicrm_gen_u(b.no, 35) AS u35, pg_temp.aicrm_gen_u(b.no, 36) AS u36,
                   pg_temp.aicrm_gen_u(b.no, 37) AS u37
            FROM aicrm_gen_base AS b
            OFFSET 0
        ) AS v
        OFFSET 0
    ) AS w
    OFFSET 0
) AS t
"""

# Step 3: contacts, people at the lead's company; on the client once it converted.
STAGE_CONTACTS = """
CREATE TEMP TABLE aicrm_gen_contact ON COMMIT DROP AS
SELECT x.*,
       CASE WHEN pg_temp.aicrm_gen_u(x.n, 103) < 0.92 THEN
           CASE WHEN pg_temp.aicrm_gen_u(x.n, 104) < 0.6
                THEN lower(x.first_name) || '.' || lower(x.last_name)
                ELSE lower(left(x.first_name, 1) || x.last_name) END || '@' || x.domain
       END AS email
FROM (
    SELECT l.no * 4 + k AS n, l.no, k,
           md5(%(tag)s || '/contact/' || l.no || '/' || k)::uuid AS id,
           l.id AS lead_id, l.client_id, l.converted, l.ended_at, l.domain,
           w.first_names[1 + floor(pg_temp.aicrm_gen_u(l.no * 4 + k, 101)
                                   * cardinality(w.first_names))::int] AS first_name,
           w.last_names[1 + floor(pg_temp.aicrm_gen_u(l.no * 4 + k, 102)
                                  * cardinality(w.last_names))::int] AS last_name,
           CASE WHEN pg_temp.aicrm_gen_u(l.no * 4 + k, 105) < 0.85 THEN
               w.titles[1 + floor(pg_temp.aicrm_gen_u(l.no * 4 + k, 106)
                                  * cardinality(w.titles))::int] END AS title,
           jsonb_build_object(
               'role', (ARRAY['decision_maker', 'influencer', 'user', 'user'])
                   [1 + floor(pg_temp.aicrm_gen_u(l.no * 4 + k, 107) * 4)::int],
               'preferred_channel', CASE WHEN pg_temp.aicrm_gen_u(l.no * 4 + k, 108) < 0.6
                                         THEN 'email' ELSE 'phone' END) AS attributes,
           l.created_at + (CASE WHEN l.converted THEN l.ended_at
                                ELSE least(%(now)s, l.created_at + interval '60 days') END
                           - l.created_at) * 0.8 * pg_temp.aicrm_gen_u(l.no * 4 + k, 109)
               AS created_at
    FROM aicrm_gen_lead AS l
    CROSS JOIN LATERAL generate_series(1, l.contacts) AS k
    CROSS JOIN (SELECT %(first_names)s::text[] AS first_names,
                       %(last_names)s::text[] AS last_names,
                       %(titles)s::text[] AS titles) AS w
) AS x
"""

# Step 4: emails unique-ish: a repeated one (among the new rows, or already in the
# database) gets the row number added to its local part.
FIND_REPEATED_EMAILS = """
CREATE TEMP TABLE aicrm_gen_repeat ON COMMIT DROP AS
SELECT r.kind, r.no, r.k
FROM (
    SELECT e.*, row_number() OVER (PARTITION BY e.email ORDER BY e.kind DESC, e.no, e.k) AS rank
    FROM (
        SELECT 'lead' AS kind, no, 0 AS k, email FROM aicrm_gen_lead WHERE email IS NOT NULL
        UNION ALL
        SELECT 'contact', no, k, email FROM aicrm_gen_contact WHERE email IS NOT NULL
    ) AS e
) AS r
WHERE r.rank > 1
   OR EXISTS (SELECT 1 FROM leads AS x WHERE lower(x.email) = r.email)
   OR EXISTS (SELECT 1 FROM contacts AS y WHERE lower(y.email) = r.email)
"""

RENAME_LEAD_EMAILS = """
UPDATE aicrm_gen_lead AS l
SET email = split_part(l.email, '@', 1) || '.' || l.no || '@' || split_part(l.email, '@', 2)
FROM aicrm_gen_repeat AS r WHERE r.kind = 'lead' AND r.no = l.no
"""

RENAME_CONTACT_EMAILS = """
UPDATE aicrm_gen_contact AS c
SET email = split_part(c.email, '@', 1) || '.' || c.no || '-' || c.k || '@'
            || split_part(c.email, '@', 2)
FROM aicrm_gen_repeat AS r WHERE r.kind = 'contact' AND r.no = c.no AND r.k = c.k
"""

# Step 5: the rows themselves, as the application would have written them.
INSERT_CLIENTS = sql.SQL("""
INSERT INTO clients (id, name, industry, ai_score, ai_summary, ai_annotations, attributes,
                     created_at, updated_at)
SELECT l.client_id, {name}, l.attributes ->> 'industry', NULL, NULL, '{{}}'::jsonb,
       l.attributes, l.ended_at, l.ended_at
FROM aicrm_gen_lead AS l
WHERE l.converted
ORDER BY l.ended_at, l.no
""").format(name=CLIENT_NAME)

INSERT_LEADS = """
INSERT INTO leads (id, first_name, last_name, email, company_name, source, status,
                   ai_score, ai_summary, ai_annotations, attributes,
                   converted_to_client_id, conversion_date, is_converted,
                   created_at, updated_at)
SELECT l.id, l.first_name, l.last_name, l.email, l.company_name, l.source, l.status,
       NULL, NULL, '{}'::jsonb, l.attributes,
       CASE WHEN l.converted THEN l.client_id END, CASE WHEN l.converted THEN l.ended_at END,
       l.converted, l.created_at, l.updated_at
FROM aicrm_gen_lead AS l
"""

INSERT_CONTACTS = """
INSERT INTO contacts (id, lead_id, client_id, first_name, last_name, email, title,
                      ai_annotations, attributes, created_at, updated_at)
SELECT c.id, CASE WHEN c.converted THEN NULL ELSE c.lead_id END,
       CASE WHEN c.converted THEN c.client_id END,
       c.first_name, c.last_name, c.email, c.title, '{}'::jsonb, c.attributes, c.created_at,
       CASE WHEN c.converted THEN c.ended_at ELSE c.created_at END
FROM aicrm_gen_contact AS c
"""

# Step 6: the history of what happened before now, as the triggers would record it.
INSERT_HISTORY = """
INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, changes)
SELECT h.table_name, h.row_id, 'update', h.changed_at, %(actor)s, h.changes
FROM (
    SELECT 'leads' AS table_name, l.id AS row_id, s.changed_at, s.changes
    FROM aicrm_gen_lead AS l
    CROSS JOIN LATERAL (VALUES
        (l.contacted_at, jsonb_build_object('status', jsonb_build_array('new', 'contacted'))),
        (l.qualified_at,
            jsonb_build_object('status', jsonb_build_array('contacted', 'qualified'))),
        (l.ended_at, CASE WHEN l.end_status = 'converted' THEN jsonb_build_object(
                'status', jsonb_build_array('qualified', 'converted'),
                'is_converted', jsonb_build_array(false, true),
                'conversion_date', jsonb_build_array(NULL, to_jsonb(l.ended_at)),
                'converted_to_client_id', jsonb_build_array(NULL, l.client_id))
            ELSE jsonb_build_object('status', jsonb_build_array(
                CASE WHEN l.qualified_at IS NOT NULL THEN 'qualified'
                     WHEN l.contacted_at IS NOT NULL THEN 'contacted' ELSE 'new' END,
                l.end_status)) END)
    ) AS s (changed_at, changes)
    WHERE s.changed_at <= %(now)s
    UNION ALL
    SELECT 'contacts', c.id, c.ended_at,
           jsonb_build_object('lead_id', jsonb_build_array(c.lead_id, NULL),
                              'client_id', jsonb_build_array(NULL, c.client_id))
    FROM aicrm_gen_contact AS c
    WHERE c.converted
) AS h
ORDER BY h.row_id, h.changed_at  -- in order of the (table_name, row_id, …) index
"""

INSERT_TRUTH = """
INSERT INTO sample_truth (lead_id, p_convert_90d, p_columns_90d)
SELECT l.id, l.p_convert, l.p_columns FROM aicrm_gen_lead AS l
"""

# Without replica mode: what the history triggers wrote for the generated rows.
DELETE_TRIGGER_HISTORY = """
DELETE FROM crm_history AS h
WHERE h.operation = 'insert' AND h.changed_at = now() AND h.actor = %(actor)s
  AND h.row_id IN (SELECT id FROM aicrm_gen_lead UNION ALL
                   SELECT client_id FROM aicrm_gen_lead WHERE converted UNION ALL
                   SELECT id FROM aicrm_gen_contact)
"""

ANALYZE = "ANALYZE leads, clients, contacts, crm_history, sample_truth"

DROP_STAGING = "DROP TABLE aicrm_gen_repeat, aicrm_gen_contact, aicrm_gen_lead, aicrm_gen_base"
DROP_RANDOM = "DROP FUNCTION pg_temp.aicrm_gen_u(bigint, integer)"

SUMMARY = """
SELECT (SELECT count(*) FROM aicrm_gen_lead),
       (SELECT count(*) FROM aicrm_gen_lead WHERE converted),
       (SELECT count(*) FROM aicrm_gen_contact),
       (SELECT jsonb_object_agg(status, n) FROM (
            SELECT status, count(*) AS n FROM aicrm_gen_lead GROUP BY status) AS s)
"""
