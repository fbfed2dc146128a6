"""The statements that fill a legacy database (:mod:`aicrm.sample._legacy`), and the
vocabulary its values are drawn from.

Each statement takes the generator's parameters by name (``%(leads)s``, the word
lists of :data:`WORDS` and :data:`SENTENCES`); they run in the order
:func:`aicrm.sample._legacy.generate_legacy` gives, after ``setseed()``.
"""

from __future__ import annotations

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
