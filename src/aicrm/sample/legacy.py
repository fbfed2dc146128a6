"""A generator of legacy CRM databases: the 000 schema, filled like the real thing.

:func:`generate_legacy` fills an empty database at migration 000 with leads
(sources, statuses, companies, emails, two years of ``created_at``, JSONB
attributes), clients converted from about 30 % of them (``converted_from_lead_id``
set, and ``leads.client_id`` set back: the circular pair, the client created
after its lead), a few clients that never were leads, and about 0.5 contacts per
lead (B2B: on the lead while it is open, mostly on the client once converted).

Everything is set-based (``generate_series`` and ``INSERT … SELECT``, a handful
of statements whatever the size) and deterministic: ids are md5 hashes of the
seed and a row number, and every other value comes from ``random()`` after
``setseed()``, drawn in a fixed order (no parallel plans, no synchronised scans,
no ``random()`` over a join whose order the planner could change). The same seed
gives the same database, row for row (PostgreSQL 15 and 18 give the same one too).
1M leads take about 25 s on two cores. The circular pair is closed by an UPDATE, as
the legacy application did, so VACUUM afterwards for a steady-state database
(bench/generate_legacy.py does).

The anomalies migration 001 must handle are made on purpose, a known number of
each, on disjoint rows, and counted in the result (each key counts rows):

* resolvable (``anomalies=True``, :data:`RESOLVABLE_ROWS` each):

  ``lead_claimed_by_two_clients``
      leads that a second, later client also names in ``converted_from_lead_id``
      (the lead's ``client_id`` names the first one);
  ``lead_client_id_disagrees``
      leads claimed by one client whose ``client_id`` names another, existing one;
  ``lead_client_id_unclaimed``
      open leads whose ``client_id`` names an existing client that claims no lead;
  ``lead_client_id_missing``
      leads claimed by a client, with ``client_id`` empty (conversion recorded on
      the client's side only);
  ``contact_both_parents_same_client``
      contacts with both ``lead_id`` and ``client_id``, the client being the one
      converted from that lead (it claims it, the lead names it back);
  ``contact_both_parents_other_client``
      contacts with both, the client unrelated to the (open) lead;

* blocking (``orphans=True``, :data:`BLOCKING_ROWS` each): ``orphan_lead_client_id``,
  ``orphan_client_converted_from_lead_id``, ``orphan_contact_lead_id`` and
  ``orphan_contact_client_id`` (rows whose column names a row that does not exist;
  each such contact has no other parent), and ``contact_without_parent``. They are
  made the way they appear in the wild: parents deleted with the foreign keys off,
  by ``SET LOCAL session_replication_role = replica`` as a superuser, or else by
  dropping the foreign keys and adding them back ``NOT VALID``; contacts detached
  from their only parent by an ``UPDATE``.

The blocking keys are the names of migration 001's integrity checks and count the
same rows.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from aicrm.errors import UsageError

UNTIL = datetime(2025, 1, 1, tzinfo=UTC)
"""The generated history ends here; ``created_at`` spreads over the two years before."""

CONVERSION_RATE = 0.30
RESOLVABLE_ROWS = 5
"""How many rows of each resolvable anomaly ``anomalies=True`` makes."""
BLOCKING_ROWS = 3
"""How many rows of each blocking anomaly ``orphans=True`` makes."""

RESOLVABLE = (
    "lead_claimed_by_two_clients",
    "lead_client_id_disagrees",
    "lead_client_id_unclaimed",
    "lead_client_id_missing",
    "contact_both_parents_same_client",
    "contact_both_parents_other_client",
)
"""Anomalies migration 001 resolves by itself, as keys of the result."""

BLOCKING = (
    "orphan_lead_client_id",
    "orphan_client_converted_from_lead_id",
    "orphan_contact_lead_id",
    "orphan_contact_client_id",
    "contact_without_parent",
)
"""Anomalies migration 001 refuses (or archives with --archive-orphans), as keys."""

OrphanMethod = Literal["replica", "not_valid"]

# Which rows each anomaly takes: (category, class of candidate rows). Classes are
# disjoint sets of rows; categories of one class take consecutive slices of it.
# A '_target' category names the other end (a client) of its anomaly's rows.
_RESOLVABLE_LAYOUT = (
    ("lead_claimed_by_two_clients", "converted_bare"),
    ("lead_client_id_disagrees", "converted_bare"),
    ("lead_client_id_disagrees_target", "direct_bare"),
    ("lead_client_id_unclaimed", "open_bare"),
    ("lead_client_id_unclaimed_target", "direct_bare"),
    ("lead_client_id_missing", "converted_bare"),
    ("contact_both_parents_same_client", "converted_bare"),
    ("contact_both_parents_other_client", "open_bare"),
    ("contact_both_parents_other_client_target", "converted_bare"),
)
_BLOCKING_LAYOUT = (
    ("orphan_lead_client_id", "converted_bare"),
    ("orphan_client_converted_from_lead_id", "converted_bare"),
    ("orphan_contact_lead_id", "open_one"),
    ("orphan_contact_client_id", "direct_one"),
    ("contact_without_parent", "open_one"),
)

LOCAL_SETTINGS = """
SELECT set_config('max_parallel_workers_per_gather', '0', true),
       set_config('synchronize_seqscans', 'off', true),
       set_config('work_mem', '64MB', true),
       setseed(%s)
"""

SCHEMA_SHAPE = """
SELECT count(*) FILTER (WHERE table_name = 'leads' AND column_name = 'client_id')
     + count(*) FILTER (WHERE table_name = 'clients' AND column_name = 'converted_from_lead_id')
     + count(*) FILTER (WHERE table_name = 'contacts' AND column_name IN ('lead_id', 'client_id')),
       count(*) FILTER (WHERE table_name = 'leads' AND column_name = 'converted_to_client_id')
FROM information_schema.columns
WHERE table_schema = current_schema()
"""

HAS_ROWS = """
SELECT EXISTS (SELECT 1 FROM leads) OR EXISTS (SELECT 1 FROM clients)
    OR EXISTS (SELECT 1 FROM contacts)
"""

IS_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"

# Subqueries whose select lists call random() are never flattened, so each level
# draws its numbers row by row, in the order of the generate_series below.
STAGE_LEADS = """
CREATE TEMP TABLE sample_lead ON COMMIT DROP AS
SELECT b.*,
       CASE WHEN b.company_name IS NULL THEN 0
            ELSE width_bucket(random(), ARRAY[0.55, 0.85, 0.95]::float8[]) END AS contacts,
       CASE WHEN b.converted THEN b.created_at
            + least(interval '120 days', %(until)s - b.created_at) * (0.02 + 0.98 * random())
       END AS converted_at,
       lower(replace(b.company_name, ' ', '')) || '.com' AS domain
FROM (
    SELECT i AS no,
           md5(%(seed)s || '/lead/' || i)::uuid AS id,
           %(until)s - random() * interval '730 days' AS created_at,
           random() < %(conversion)s AS converted,
           w.first_names[1 + floor(random() * cardinality(w.first_names))::int] AS first_name,
           w.last_names[1 + floor(random() * cardinality(w.last_names))::int] AS last_name,
           CASE WHEN random() < 0.8 THEN
               w.company_words[1 + floor(random() * cardinality(w.company_words))::int] || ' '
               || w.company_words[1 + floor(random() * cardinality(w.company_words))::int] || ' '
               || w.company_kinds[1 + floor(random() * cardinality(w.company_kinds))::int]
           END AS company_name
    FROM generate_series(1, %(leads)s) AS i CROSS JOIN (
        SELECT %(first_names)s::text[] AS first_names,
               %(last_names)s::text[] AS last_names,
               %(company_words)s::text[] AS company_words,
               %(company_kinds)s::text[] AS company_kinds
    ) AS w
) AS b
"""

STAGE_DIRECT = """
CREATE TEMP TABLE sample_direct ON COMMIT DROP AS
SELECT b.*,
       width_bucket(random(), ARRAY[0.5, 0.8]::float8[]) AS contacts,
       lower(replace(b.name, ' ', '')) || '.com' AS domain
FROM (
    SELECT i AS no,
           md5(%(seed)s || '/direct/' || i)::uuid AS id,
           %(until)s - random() * interval '730 days' AS created_at,
           w.company_words[1 + floor(random() * cardinality(w.company_words))::int] || ' '
           || w.company_words[1 + floor(random() * cardinality(w.company_words))::int] || ' '
           || w.company_kinds[1 + floor(random() * cardinality(w.company_kinds))::int] AS name
    FROM generate_series(1, %(direct)s) AS i CROSS JOIN (
        SELECT %(company_words)s::text[] AS company_words,
               %(company_kinds)s::text[] AS company_kinds
    ) AS w
) AS b
"""

INSERT_LEADS = """
INSERT INTO leads (id, first_name, last_name, email, company_name, source, status,
                   ai_score, ai_summary, ai_annotations, attributes, created_at, updated_at)
SELECT s.id, s.first_name, s.last_name,
       CASE WHEN random() < 0.95 THEN
           lower(s.first_name) || '.' || lower(s.last_name)
           || CASE WHEN random() < 0.3 THEN (1 + floor(random() * 99))::int::text ELSE '' END
           || '@' || coalesce(
               s.domain, w.free_domains[1 + floor(random() * cardinality(w.free_domains))::int])
       END,
       s.company_name,
       CASE WHEN random() < 0.97 THEN
           w.sources[1 + floor(random() * cardinality(w.sources))::int] END,
       CASE WHEN s.converted THEN CASE WHEN random() < 0.9 THEN 'converted' ELSE 'won' END
            ELSE w.open_statuses[1 + floor(random() * cardinality(w.open_statuses))::int] END,
       CASE WHEN random() < 0.6 THEN round(random()::numeric, 3)::real END,
       CASE WHEN random() < 0.2 THEN
           w.lead_summaries[1 + floor(random() * cardinality(w.lead_summaries))::int] END,
       CASE WHEN random() < 0.2 THEN jsonb_build_object(
           'model', w.models[1 + floor(random() * cardinality(w.models))::int],
           'intent', w.intents[1 + floor(random() * cardinality(w.intents))::int],
           'confidence', round(random()::numeric, 2))
       ELSE '{}'::jsonb END,
       CASE WHEN random() < 0.3 THEN '{}'::jsonb ELSE jsonb_build_object(
           'utm_campaign', w.campaigns[1 + floor(random() * cardinality(w.campaigns))::int],
           'country', w.countries[1 + floor(random() * cardinality(w.countries))::int],
           'employees', floor(10 ^ (1 + 3 * random()))::int,
           'tags', jsonb_build_array(w.tags[1 + floor(random() * cardinality(w.tags))::int]))
       END,
       s.created_at,
       s.created_at + (%(until)s - s.created_at) * random()
FROM sample_lead AS s CROSS JOIN (
    SELECT %(free_domains)s::text[] AS free_domains,
           %(sources)s::text[] AS sources,
           %(open_statuses)s::text[] AS open_statuses,
           %(lead_summaries)s::text[] AS lead_summaries,
           %(models)s::text[] AS models,
           %(intents)s::text[] AS intents,
           %(campaigns)s::text[] AS campaigns,
           %(countries)s::text[] AS countries,
           %(tags)s::text[] AS tags
) AS w
"""

INSERT_CONVERTED_CLIENTS = """
INSERT INTO clients (id, converted_from_lead_id, name, industry, ai_score, ai_summary,
                     ai_annotations, attributes, created_at, updated_at)
SELECT md5(%(seed)s || '/client/' || s.no)::uuid, s.id,
       coalesce(s.company_name, s.first_name || ' ' || s.last_name),
       CASE WHEN random() < 0.9 THEN
           w.industries[1 + floor(random() * cardinality(w.industries))::int] END,
       CASE WHEN random() < 0.7 THEN round(random()::numeric, 3)::real END,
       CASE WHEN random() < 0.3 THEN
           w.client_summaries[1 + floor(random() * cardinality(w.client_summaries))::int] END,
       CASE WHEN random() < 0.3 THEN jsonb_build_object(
           'model', w.models[1 + floor(random() * cardinality(w.models))::int],
           'churn_risk', round(random()::numeric, 2))
       ELSE '{}'::jsonb END,
       jsonb_build_object(
           'plan', w.plans[1 + floor(random() * cardinality(w.plans))::int],
           'seats', 1 + floor(random() * 200)::int,
           'account_manager', w.first_names[1 + floor(random() * cardinality(w.first_names))::int]),
       s.converted_at,
       s.converted_at + (%(until)s - s.converted_at) * random()
FROM sample_lead AS s CROSS JOIN (
    SELECT %(industries)s::text[] AS industries,
           %(client_summaries)s::text[] AS client_summaries,
           %(models)s::text[] AS models,
           %(plans)s::text[] AS plans,
           %(first_names)s::text[] AS first_names
) AS w
WHERE s.converted
"""

INSERT_DIRECT_CLIENTS = """
INSERT INTO clients (id, name, industry, ai_score, attributes, created_at, updated_at)
SELECT d.id, d.name,
       CASE WHEN random() < 0.9 THEN
           w.industries[1 + floor(random() * cardinality(w.industries))::int] END,
       CASE WHEN random() < 0.5 THEN round(random()::numeric, 3)::real END,
       jsonb_build_object(
           'plan', w.plans[1 + floor(random() * cardinality(w.plans))::int],
           'seats', 1 + floor(random() * 200)::int,
           'signed_offline', true),
       d.created_at,
       d.created_at + (%(until)s - d.created_at) * random()
FROM sample_direct AS d CROSS JOIN (
    SELECT %(industries)s::text[] AS industries,
           %(plans)s::text[] AS plans
) AS w
"""

# The conversion code of the legacy CRM: the lead learns its client afterwards.
CLOSE_THE_CIRCLE = """
UPDATE leads AS l
SET client_id = c.id, updated_at = greatest(l.updated_at, c.created_at)
FROM clients AS c
WHERE c.converted_from_lead_id = l.id
"""

INSERT_LEAD_CONTACTS = """
INSERT INTO contacts (id, lead_id, client_id, first_name, last_name, email, title,
                      ai_annotations, attributes, created_at, updated_at)
SELECT x.id,
       CASE WHEN x.on_client THEN NULL ELSE x.lead_id END,
       CASE WHEN x.on_client THEN x.client_id END,
       x.first_name, x.last_name,
       CASE WHEN random() < 0.9 THEN
           lower(x.first_name) || '.' || lower(x.last_name) || '@' || x.domain END,
       CASE WHEN random() < 0.8 THEN
           w.titles[1 + floor(random() * cardinality(w.titles))::int] END,
       CASE WHEN random() < 0.1 THEN jsonb_build_object(
           'model', w.models[1 + floor(random() * cardinality(w.models))::int],
           'role', 'decision_maker')
       ELSE '{}'::jsonb END,
       CASE WHEN random() < 0.5 THEN '{}'::jsonb ELSE jsonb_build_object(
           'phone', '+1-555-' || lpad(floor(random() * 10000)::int::text, 4, '0'),
           'preferred_channel', CASE WHEN random() < 0.5 THEN 'email' ELSE 'phone' END)
       END,
       x.parent_at + (%(until)s - x.parent_at) * x.lag,
       x.parent_at + (%(until)s - x.parent_at) * (x.lag + (1 - x.lag) * random())
FROM (
    SELECT md5(%(seed)s || '/contact/' || s.no || '/' || k)::uuid AS id,
           s.id AS lead_id,
           md5(%(seed)s || '/client/' || s.no)::uuid AS client_id,
           s.domain,
           s.converted AND random() < 0.8 AS on_client,
           CASE WHEN s.converted THEN s.converted_at ELSE s.created_at END AS parent_at,
           0.5 * random() AS lag,
           w.first_names[1 + floor(random() * cardinality(w.first_names))::int] AS first_name,
           w.last_names[1 + floor(random() * cardinality(w.last_names))::int] AS last_name
    FROM sample_lead AS s
    CROSS JOIN LATERAL generate_series(1, s.contacts) AS k
    CROSS JOIN (
        SELECT %(first_names)s::text[] AS first_names,
               %(last_names)s::text[] AS last_names
    ) AS w
    WHERE s.contacts > 0
) AS x
CROSS JOIN (SELECT %(titles)s::text[] AS titles, %(models)s::text[] AS models) AS w
"""

INSERT_DIRECT_CONTACTS = """
INSERT INTO contacts (id, client_id, first_name, last_name, email, title, created_at,
                      updated_at)
SELECT x.id, x.client_id, x.first_name, x.last_name,
       lower(x.first_name) || '.' || lower(x.last_name) || '@' || x.domain,
       CASE WHEN random() < 0.8 THEN
           w.titles[1 + floor(random() * cardinality(w.titles))::int] END,
       x.created_at,
       x.created_at + (%(until)s - x.created_at) * random()
FROM (
    SELECT md5(%(seed)s || '/direct-contact/' || d.no || '/' || k)::uuid AS id,
           d.id AS client_id,
           d.domain,
           d.created_at + (%(until)s - d.created_at) * 0.5 * random() AS created_at,
           w.first_names[1 + floor(random() * cardinality(w.first_names))::int] AS first_name,
           w.last_names[1 + floor(random() * cardinality(w.last_names))::int] AS last_name
    FROM sample_direct AS d
    CROSS JOIN LATERAL generate_series(1, d.contacts) AS k
    CROSS JOIN (
        SELECT %(first_names)s::text[] AS first_names,
               %(last_names)s::text[] AS last_names
    ) AS w
    WHERE d.contacts > 0
) AS x
CROSS JOIN (SELECT %(titles)s::text[] AS titles) AS w
"""

# Candidate rows by class, numbered in row order; each category takes its slice.
# ``client_id`` is the client a row stands for: a converted lead's client, or the
# direct client itself.
PICK = """
CREATE TEMP TABLE sample_pick ON COMMIT DROP AS
SELECT w.category, c.no, c.id, c.client_id, (c.rank - w.first)::int AS slot
FROM (
    SELECT classed.*, row_number() OVER (PARTITION BY class ORDER BY no) AS rank
    FROM (
        SELECT no, id,
               CASE WHEN converted THEN md5(%(seed)s || '/client/' || no)::uuid END AS client_id,
               CASE WHEN converted AND contacts = 0 THEN 'converted_bare'
                    WHEN NOT converted AND contacts = 0 THEN 'open_bare'
                    WHEN NOT converted AND contacts = 1 THEN 'open_one' END AS class
        FROM sample_lead
        UNION ALL
        SELECT no, id, id,
               CASE contacts WHEN 0 THEN 'direct_bare' WHEN 1 THEN 'direct_one' END
        FROM sample_direct
    ) AS classed
    WHERE class IS NOT NULL
) AS c
JOIN unnest(%(categories)s::text[], %(classes)s::text[], %(firsts)s::int[], %(counts)s::int[])
     AS w (category, class, first, count)
  ON c.class = w.class AND c.rank >= w.first AND c.rank < w.first + w.count
"""

PICKED = "SELECT category, count(*) FROM sample_pick GROUP BY category"

# The resolvable anomalies. No random() here: values derive from the slot.
CLAIM_AGAIN = """
INSERT INTO clients (id, converted_from_lead_id, name, industry, attributes, created_at,
                     updated_at)
SELECT md5(%(seed)s || '/client-again/' || p.no)::uuid, c.converted_from_lead_id, c.name,
       c.industry, c.attributes,
       c.created_at + (%(until)s - c.created_at) / 2,
       c.created_at + (%(until)s - c.created_at) / 2
FROM sample_pick AS p JOIN clients AS c ON c.id = p.client_id
WHERE p.category = 'lead_claimed_by_two_clients'
"""

POINT_LEAD_AT_TARGET = """
UPDATE leads AS l
SET client_id = t.client_id
FROM sample_pick AS p
JOIN sample_pick AS t ON t.category = p.category || '_target' AND t.slot = p.slot
WHERE p.category = %(category)s AND l.id = p.id
"""

# The conversion recorded on the client's side only.
FORGET_CLIENT = """
UPDATE leads AS l SET client_id = NULL
FROM sample_pick AS p
WHERE p.category = 'lead_client_id_missing' AND l.id = p.id
"""

CONTACT_ON_BOTH = """
INSERT INTO contacts (id, lead_id, client_id, first_name, last_name, title, created_at,
                      updated_at)
SELECT md5(%(seed)s || '/contact-on-both/' || p.category || '/' || p.no)::uuid,
       p.id,
       coalesce(t.client_id, p.client_id),
       w.first_names[1 + p.slot %% cardinality(w.first_names)],
       w.last_names[1 + p.slot %% cardinality(w.last_names)],
       w.titles[1 + p.slot %% cardinality(w.titles)],
       %(until)s - interval '1 day', %(until)s - interval '1 day'
FROM sample_pick AS p
LEFT JOIN sample_pick AS t ON t.category = p.category || '_target' AND t.slot = p.slot
CROSS JOIN (
    SELECT %(first_names)s::text[] AS first_names,
           %(last_names)s::text[] AS last_names,
           %(titles)s::text[] AS titles
) AS w
WHERE p.category = %(category)s
"""

# The blocking anomalies: parents deleted behind the foreign keys' back.
DELETE_CLIENTS = """
DELETE FROM clients AS c USING sample_pick AS p
WHERE p.category IN ('orphan_lead_client_id', 'orphan_contact_client_id')
  AND c.id = p.client_id
"""

DELETE_LEADS = """
DELETE FROM leads AS l USING sample_pick AS p
WHERE p.category IN ('orphan_client_converted_from_lead_id', 'orphan_contact_lead_id')
  AND l.id = p.id
"""

DETACH_CONTACTS = """
UPDATE contacts AS c SET lead_id = NULL
FROM sample_pick AS p
WHERE p.category = 'contact_without_parent' AND c.lead_id = p.id
"""

# The references left dangling by the deletions, per category.
DANGLING = """
SELECT (SELECT count(*) FROM leads AS l JOIN sample_pick AS p
          ON p.category = 'orphan_lead_client_id' AND l.client_id = p.client_id),
       (SELECT count(*) FROM clients AS c JOIN sample_pick AS p
          ON p.category = 'orphan_client_converted_from_lead_id'
         AND c.converted_from_lead_id = p.id),
       (SELECT count(*) FROM contacts AS c JOIN sample_pick AS p
          ON p.category = 'orphan_contact_lead_id' AND c.lead_id = p.id),
       (SELECT count(*) FROM contacts AS c JOIN sample_pick AS p
          ON p.category = 'orphan_contact_client_id' AND c.client_id = p.client_id)
"""

REPLICATION_ROLE = "SELECT current_setting('session_replication_role')"
SET_REPLICATION_ROLE = "SELECT set_config('session_replication_role', %s, true)"

DROP_FOREIGN_KEYS = """
ALTER TABLE leads DROP CONSTRAINT leads_client_id_fkey;
ALTER TABLE clients DROP CONSTRAINT clients_converted_from_lead_id_fkey;
ALTER TABLE contacts DROP CONSTRAINT contacts_lead_id_fkey,
                     DROP CONSTRAINT contacts_client_id_fkey
"""

ADD_FOREIGN_KEYS_NOT_VALID = """
ALTER TABLE leads ADD CONSTRAINT leads_client_id_fkey
    FOREIGN KEY (client_id) REFERENCES clients (id) NOT VALID;
ALTER TABLE clients ADD CONSTRAINT clients_converted_from_lead_id_fkey
    FOREIGN KEY (converted_from_lead_id) REFERENCES leads (id) NOT VALID;
ALTER TABLE contacts
    ADD CONSTRAINT contacts_lead_id_fkey FOREIGN KEY (lead_id) REFERENCES leads (id) NOT VALID,
    ADD CONSTRAINT contacts_client_id_fkey
        FOREIGN KEY (client_id) REFERENCES clients (id) NOT VALID
"""

ANALYZE = "ANALYZE leads, clients, contacts"

COUNTS = """
SELECT (SELECT count(*) FROM leads), (SELECT count(*) FROM clients),
       (SELECT count(*) FROM contacts)
"""

# Vocabulary, comma-separated: picked at random (repeats make a value more likely).
WORDS: dict[str, str] = {
    "first_names": (
        "Ada, Alan, Amara, Ana, Ben, Carla, Chen, Dara, David, Elena, Emeka, Eva, Farid, Grace, "
        "Hana, Ivan, Jana, Jonas, Kai, Laura, Leila, Lucas, Maya, Mei, Nadia, Noah, Olga, Omar, "
        "Paula, Priya, Rafael, Rosa, Sam, Sara, Tariq, Tom, Uma, Victor, Yuki, Zoe"
    ),
    "last_names": (
        "Abe, Adeyemi, Berg, Costa, Dubois, Eriksen, Fischer, Garcia, Haddad, Ito, Jensen, Khan, "
        "Kowalski, Lopez, Martin, Meyer, Moreau, Nakamura, Novak, Okafor, Olsen, Patel, Petrov, "
        "Quinn, Rossi, Santos, Schmidt, Silva, Smith, Tanaka, Ueda, Vargas, Wang, Weber, Xu, "
        "Yilmaz, Zhang"
    ),
    "company_words": (
        "Acme, Apex, Atlas, Aurora, Beacon, Blue, Cedar, Cobalt, Delta, Echo, Evergreen, Falcon, "
        "Granite, Harbor, Helix, Iron, Juniper, Keystone, Lumen, Maple, Meridian, Nimbus, North, "
        "Nova, Orbit, Pioneer, Quartz, River, Sierra, Silver, Summit, Terra, Union, Vertex, "
        "Willow, Zenith"
    ),
    "company_kinds": (
        "Labs, Systems, Logistics, Health, Retail, Foods, Energy, Capital, Software, Consulting, "
        "GmbH, Ltd, Inc, SA, Group"
    ),
    "free_domains": "gmail.com, outlook.com, yahoo.com, proton.me, gmx.de",
    "sources": (
        "web, web, web, referral, referral, event, cold_call, partner, linkedin, ads, import"
    ),
    "open_statuses": "new, new, new, contacted, contacted, qualified, nurturing, unqualified, lost",
    "industries": (
        "software, manufacturing, healthcare, retail, logistics, finance, education, energy, "
        "media, hospitality, construction, public sector"
    ),
    "titles": (
        "CEO, CTO, CFO, COO, Head of Sales, Head of IT, Procurement Manager, Operations Manager, "
        "Office Manager, Engineer, Product Manager, Buyer, Marketing Lead, Assistant, Founder"
    ),
    "campaigns": (
        "spring_webinar, black_friday, newsletter, trade_fair, retargeting, partner_program, "
        "free_trial, whitepaper, podcast, seo"
    ),
    "countries": "DE, FR, GB, US, ES, IT, NL, PL, SE, BR, IN, JP",
    "tags": (
        "hot, budget_approved, needs_demo, competitor_user, enterprise, smb, renewal, upsell, "
        "follow_up, no_reply, vip, trial"
    ),
    "models": "gpt-4o-mini, claude-3-haiku, llama-3-8b",
    "intents": "purchase, research, support, partnership, unknown",
    "plans": "starter, team, business, enterprise",
}
SENTENCES: dict[str, tuple[str, ...]] = {
    "lead_summaries": (
        "Asked for a demo of the reporting module.",
        "Downloaded the pricing sheet twice; no reply to follow-up.",
        "Comparing us with two competitors; decision next quarter.",
        "Small team, price sensitive, interested in the starter plan.",
        "Met at the trade fair; wants an integration with their ERP.",
        "Inbound from the webinar; budget not confirmed.",
    ),
    "client_summaries": (
        "Steady usage; renewal likely.",
        "Seats grew 40 % this year; upsell candidate.",
        "Opened three support tickets last month; churn risk.",
        "Pays annually; champion left the company.",
        "Uses only the basic features; training offered.",
    ),
}


def generate_legacy(
    conn: psycopg.Connection[Any],
    *,
    leads: int,
    seed: int = 1,
    anomalies: bool = True,
    orphans: bool = False,
    orphan_method: OrphanMethod | None = None,
    until: datetime = UNTIL,
) -> dict[str, int]:
    """Fill an empty database at migration 000 with ``leads`` legacy leads and the
    clients and contacts that go with them, in one transaction; return the counts.

    The result holds ``leads``, ``clients`` and ``contacts`` (rows in the tables at
    the end), and every key of :data:`RESOLVABLE` and :data:`BLOCKING`: how many
    rows of that anomaly were made (0 unless ``anomalies`` or ``orphans`` asked
    for them). ``orphan_method`` chooses how the blocking ones are made: ``replica``
    (needs a superuser) or ``not_valid``; by default ``replica`` for a superuser.

    Raises :class:`UsageError` when the database is not an empty 000 schema, when
    ``leads`` is not positive, or when there are too few leads to place every
    anomaly asked for (use at least about 500).
    """
    if leads < 1:
        raise UsageError(f"Cannot generate {leads} leads; ask for at least one.")
    layout = (_RESOLVABLE_LAYOUT if anomalies else ()) + (_BLOCKING_LAYOUT if orphans else ())
    with conn.transaction():
        _check_empty_000(conn)
        params: dict[str, Any] = {
            "seed": str(seed),
            "until": until,
            "leads": leads,
            "direct": leads // 100 + 50,
            "conversion": CONVERSION_RATE,
            **{name: [w.strip() for w in words.split(",")] for name, words in WORDS.items()},
            **{name: list(sentences) for name, sentences in SENTENCES.items()},
        }
        conn.execute(LOCAL_SETTINGS, (random.Random(seed).uniform(-1.0, 1.0),))
        for statement in (
            STAGE_LEADS,
            STAGE_DIRECT,
            INSERT_LEADS,
            INSERT_CONVERTED_CLIENTS,
            INSERT_DIRECT_CLIENTS,
            CLOSE_THE_CIRCLE,
            INSERT_LEAD_CONTACTS,
            INSERT_DIRECT_CONTACTS,
        ):
            conn.execute(statement, params)
        made = {name: 0 for name in (*RESOLVABLE, *BLOCKING)}
        if layout:
            made.update(_make_anomalies(conn, params, layout, anomalies, orphans, orphan_method))
        conn.execute(ANALYZE)
        row = conn.execute(COUNTS).fetchone()
    assert row is not None
    return {"leads": int(row[0]), "clients": int(row[1]), "contacts": int(row[2]), **made}


def _check_empty_000(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(SCHEMA_SHAPE).fetchone()
    if row is None or int(row[0]) != 4 or int(row[1]) != 0:
        raise UsageError(
            "The database is not at migration 000 (the original leads, clients and contacts "
            "with their circular references). Run 'aicrm db migrate --target 000' on an empty "
            "database first."
        )
    has_rows = conn.execute(HAS_ROWS).fetchone()
    if has_rows and has_rows[0]:
        raise UsageError(
            "The database already holds leads, clients or contacts; generate into an empty "
            "000 database."
        )


def _make_anomalies(
    conn: psycopg.Connection[Any],
    params: dict[str, Any],
    layout: tuple[tuple[str, str], ...],
    anomalies: bool,
    orphans: bool,
    orphan_method: OrphanMethod | None,
) -> dict[str, int]:
    wanted = {
        category: BLOCKING_ROWS if category in BLOCKING else RESOLVABLE_ROWS
        for category, _ in layout
    }
    firsts: list[int] = []
    taken: dict[str, int] = {}
    for category, kind in layout:
        firsts.append(taken.get(kind, 0) + 1)
        taken[kind] = taken.get(kind, 0) + wanted[category]
    conn.execute(
        PICK,
        {
            **params,
            "categories": [category for category, _ in layout],
            "classes": [kind for _, kind in layout],
            "firsts": firsts,
            "counts": [wanted[category] for category, _ in layout],
        },
    )
    picked = dict(conn.execute(PICKED).fetchall())
    short = [c for c in wanted if picked.get(c, 0) < wanted[c]]
    if short:
        raise UsageError(
            f"{params['leads']} leads are too few to place every anomaly asked for "
            f"({', '.join(short)}); generate at least about 500 leads."
        )
    made: dict[str, int] = {}
    if anomalies:
        made["lead_claimed_by_two_clients"] = conn.execute(CLAIM_AGAIN, params).rowcount
        for category in ("lead_client_id_disagrees", "lead_client_id_unclaimed"):
            made[category] = conn.execute(
                POINT_LEAD_AT_TARGET, {**params, "category": category}
            ).rowcount
        made["lead_client_id_missing"] = conn.execute(FORGET_CLIENT).rowcount
        for category in ("contact_both_parents_same_client", "contact_both_parents_other_client"):
            made[category] = conn.execute(
                CONTACT_ON_BOTH, {**params, "category": category}
            ).rowcount
    if orphans:
        made.update(_make_orphans(conn, orphan_method))
    return made


def _make_orphans(
    conn: psycopg.Connection[Any], orphan_method: OrphanMethod | None
) -> dict[str, int]:
    if orphan_method is None:
        superuser = conn.execute(IS_SUPERUSER).fetchone()
        orphan_method = "replica" if superuser and superuser[0] else "not_valid"
    if orphan_method == "replica":
        role = conn.execute(REPLICATION_ROLE).fetchone()
        conn.execute(SET_REPLICATION_ROLE, ("replica",))
    else:
        role = None
        conn.execute(DROP_FOREIGN_KEYS)
    conn.execute(DELETE_CLIENTS)
    conn.execute(DELETE_LEADS)
    detached = conn.execute(DETACH_CONTACTS).rowcount
    if role is not None:
        conn.execute(SET_REPLICATION_ROLE, (str(role[0]),))
    else:
        conn.execute(ADD_FOREIGN_KEYS_NOT_VALID)
    row = conn.execute(DANGLING).fetchone()
    assert row is not None
    return {
        "orphan_lead_client_id": int(row[0]),
        "orphan_client_converted_from_lead_id": int(row[1]),
        "orphan_contact_lead_id": int(row[2]),
        "orphan_contact_client_id": int(row[3]),
        "contact_without_parent": detached,
    }
