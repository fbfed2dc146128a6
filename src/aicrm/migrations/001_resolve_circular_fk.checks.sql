-- Checks of migration 001 (format: see aicrm/migrate/loader.py; design: docs/migration-001.md).
--
-- Integrity checks run against the legacy schema (000) before anything changes; each
-- returns one row per anomaly, the offending row's id first. Blocking ones refuse the
-- run (exit 3) unless --archive-orphans; resolvable ones are resolved by 001's rules.
-- Every row the migration archives carries a reason that starts with the name of the
-- check that counted it, so the counts of a dry-run and of the real run match the
-- archive grouped by reason.
--
-- A few checks wrap their query in a MATERIALIZED CTE: the engine also runs each one
-- under LIMIT 10 for samples, and the CTE keeps that one planned for all rows (hash
-- joins) instead of nested loops that probe every row when there is no anomaly.
--
-- Verification checks run inside the migration's transaction and with 'aicrm db
-- verify'; any row is a failure.
--
-- The columns 001 drops: before anything changes, the engine looks for every object
-- that depends on them (aicrm/migrate/_dependents.py, docs/dependents.md). Declared
-- here, not in the .sql, so that the checksum of 001 stays what the ledger recorded.
-- aicrm:drops leads.client_id (use leads.converted_to_client_id), clients.converted_from_lead_id (use the leads whose converted_to_client_id is the client's id)

-- name: orphan_lead_client_id
-- kind: integrity
-- severity: blocking
-- description: leads whose client_id names no existing client (id, client_id)
SELECT l.id, l.client_id
FROM leads AS l
WHERE l.client_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM clients AS c WHERE c.id = l.client_id);

-- name: orphan_client_converted_from_lead_id
-- kind: integrity
-- severity: blocking
-- description: clients whose converted_from_lead_id names no existing lead (id, converted_from_lead_id)
SELECT c.id, c.converted_from_lead_id
FROM clients AS c
WHERE c.converted_from_lead_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM leads AS l WHERE l.id = c.converted_from_lead_id);

-- name: orphan_contact_lead_id
-- kind: integrity
-- severity: blocking
-- description: contacts whose lead_id names no existing lead (id, lead_id)
SELECT k.id, k.lead_id
FROM contacts AS k
WHERE k.lead_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM leads AS l WHERE l.id = k.lead_id);

-- name: orphan_contact_client_id
-- kind: integrity
-- severity: blocking
-- description: contacts whose client_id names no existing client (id, client_id)
SELECT k.id, k.client_id
FROM contacts AS k
WHERE k.client_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM clients AS c WHERE c.id = k.client_id);

-- name: contact_without_parent
-- kind: integrity
-- severity: blocking
-- description: contacts with neither lead_id nor client_id (moved whole to migration_001_orphan_contacts with --archive-orphans)
SELECT k.id
FROM contacts AS k
WHERE k.lead_id IS NULL AND k.client_id IS NULL;

-- name: contact_with_only_orphan_parents
-- kind: integrity
-- severity: blocking
-- description: contacts whose every parent reference names no existing row (moved whole to migration_001_orphan_contacts with --archive-orphans, references archived)
WITH found AS MATERIALIZED (
    SELECT k.id, k.lead_id, k.client_id
    FROM contacts AS k
    WHERE (k.lead_id IS NOT NULL OR k.client_id IS NOT NULL)
      AND NOT EXISTS (SELECT 1 FROM leads AS l WHERE l.id = k.lead_id)
      AND NOT EXISTS (SELECT 1 FROM clients AS c WHERE c.id = k.client_id)
)
SELECT * FROM found;

-- name: lead_claimed_by_several_clients
-- kind: integrity
-- severity: resolvable
-- description: clients naming a lead that an earlier client (created_at, then id) also names: the earliest keeps the conversion, these later claims are archived (id, lead)
WITH found AS MATERIALIZED (
    SELECT ranked.id, ranked.converted_from_lead_id
    FROM (
        SELECT c.id, c.converted_from_lead_id,
               row_number() OVER (PARTITION BY c.converted_from_lead_id
                                  ORDER BY c.created_at, c.id) AS claim
        FROM clients AS c
        WHERE c.converted_from_lead_id IN (SELECT l.id FROM leads AS l)
    ) AS ranked
    WHERE ranked.claim > 1
)
SELECT * FROM found;

-- name: lead_client_id_disagrees
-- kind: integrity
-- severity: resolvable
-- description: leads whose client_id names another client than the one whose converted_from_lead_id names the lead: that client wins, client_id is archived (id, client_id, winner)
WITH found AS MATERIALIZED (
    SELECT l.id, l.client_id, w.client_id AS converted_to
    FROM leads AS l
    JOIN (
        SELECT DISTINCT ON (c.converted_from_lead_id)
               c.converted_from_lead_id AS lead_id, c.id AS client_id
        FROM clients AS c
        WHERE c.converted_from_lead_id IS NOT NULL
        ORDER BY c.converted_from_lead_id, c.created_at, c.id
    ) AS w ON w.lead_id = l.id
    WHERE l.client_id <> w.client_id
      AND EXISTS (SELECT 1 FROM clients AS c WHERE c.id = l.client_id)
)
SELECT * FROM found;

-- name: lead_converted_only_on_client_side
-- kind: integrity
-- severity: resolvable
-- description: leads a client's converted_from_lead_id names while their client_id is empty: converted to that client
WITH found AS MATERIALIZED (
    SELECT DISTINCT l.id
    FROM clients AS c
    JOIN leads AS l ON l.id = c.converted_from_lead_id
    WHERE l.client_id IS NULL
)
SELECT * FROM found;

-- name: lead_converted_only_on_lead_side
-- kind: integrity
-- severity: resolvable
-- description: leads whose client_id names a client while no client's converted_from_lead_id names them: converted to that client (id, client_id)
SELECT l.id, l.client_id
FROM leads AS l
JOIN clients AS c ON c.id = l.client_id
WHERE NOT EXISTS (SELECT 1 FROM clients AS e WHERE e.converted_from_lead_id = l.id);

-- name: client_converted_from_several_leads
-- kind: integrity
-- severity: resolvable
-- description: clients that several leads convert to under 001's rules: all are kept (one history row each) (id, leads)
SELECT conv.client_id, count(*) AS leads
FROM (
    SELECT coalesce(w.client_id, lc.id) AS client_id
    FROM leads AS l
    LEFT JOIN (
        SELECT DISTINCT ON (c.converted_from_lead_id)
               c.converted_from_lead_id AS lead_id, c.id AS client_id
        FROM clients AS c
        WHERE c.converted_from_lead_id IS NOT NULL
        ORDER BY c.converted_from_lead_id, c.created_at, c.id
    ) AS w ON w.lead_id = l.id
    LEFT JOIN clients AS lc ON lc.id = l.client_id
    WHERE w.client_id IS NOT NULL OR lc.id IS NOT NULL
) AS conv
GROUP BY conv.client_id
HAVING count(*) > 1;

-- name: contact_with_both_parents
-- kind: integrity
-- severity: resolvable
-- description: contacts linked to both an existing lead and an existing client: they keep client_id (see contact_lead_link_archived for the lead links archived)
WITH found AS MATERIALIZED (
    SELECT k.id, k.lead_id, k.client_id
    FROM contacts AS k
    JOIN leads AS l ON l.id = k.lead_id
    JOIN clients AS c ON c.id = k.client_id
)
SELECT * FROM found;

-- name: contact_lead_link_archived
-- kind: integrity
-- severity: resolvable
-- description: contacts with both parents whose lead does not convert to their client: the lead link is archived (id, lead_id, client_id)
WITH found AS MATERIALIZED (
    SELECT k.id, k.lead_id, k.client_id
    FROM contacts AS k
    JOIN leads AS l ON l.id = k.lead_id
    JOIN clients AS kc ON kc.id = k.client_id
    LEFT JOIN (
        SELECT DISTINCT ON (c.converted_from_lead_id)
               c.converted_from_lead_id AS lead_id, c.id AS client_id
        FROM clients AS c
        WHERE c.converted_from_lead_id IS NOT NULL
        ORDER BY c.converted_from_lead_id, c.created_at, c.id
    ) AS w ON w.lead_id = l.id
    LEFT JOIN clients AS lc ON lc.id = l.client_id
    WHERE coalesce(w.client_id, lc.id) IS DISTINCT FROM k.client_id
)
SELECT * FROM found;

-- name: no_foreign_key_cycle
-- kind: verify
-- description: no cycle in the foreign-key graph among leads, clients and contacts (pg_constraint, by relation, whatever the names)
WITH RECURSIVE edge AS (
    SELECT DISTINCT k.conrelid AS src, k.confrelid AS dst
    FROM pg_constraint AS k
    WHERE k.contype = 'f' AND k.conrelid <> k.confrelid
      AND k.conrelid IN (to_regclass('leads'), to_regclass('clients'), to_regclass('contacts'))
      AND k.confrelid IN (to_regclass('leads'), to_regclass('clients'), to_regclass('contacts'))
), walk (start, node, path, closed) AS (
    SELECT e.src, e.dst, ARRAY[e.src, e.dst], false
    FROM edge AS e
    UNION ALL
    SELECT w.start, e.dst, w.path || e.dst, e.dst = ANY (w.path)
    FROM walk AS w
    JOIN edge AS e ON e.src = w.node
    WHERE NOT w.closed
)
SELECT 'foreign-key cycle: ' || array_to_string(w.path::regclass[]::text[], ' -> ') AS cycle
FROM walk AS w
WHERE w.closed AND w.node = w.start;

-- name: legacy_columns_dropped
-- kind: verify
-- description: leads.client_id and clients.converted_from_lead_id are gone
SELECT c.table_name || '.' || c.column_name AS still_there
FROM information_schema.columns AS c
WHERE c.table_schema = current_schema()
  AND (c.table_name, c.column_name) IN (('leads', 'client_id'), ('clients', 'converted_from_lead_id'));

-- name: conversion_columns
-- kind: verify
-- description: leads has converted_to_client_id uuid NULL, conversion_date timestamptz NULL, is_converted boolean NOT NULL DEFAULT false
SELECT expected.name || ' ' || expected.type AS missing
FROM (VALUES ('converted_to_client_id', 'uuid', false, NULL),
             ('conversion_date', 'timestamp with time zone', false, NULL),
             ('is_converted', 'boolean', true, 'false')) AS expected (name, type, not_null, dflt)
WHERE NOT EXISTS (
    SELECT 1
    FROM pg_attribute AS a
    LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = to_regclass('leads') AND a.attname = expected.name AND NOT a.attisdropped
      AND format_type(a.atttypid, a.atttypmod) = expected.type
      AND a.attnotnull = expected.not_null
      AND pg_get_expr(d.adbin, d.adrelid) IS NOT DISTINCT FROM expected.dflt
);

-- name: one_validated_conversion_key
-- kind: verify
-- description: exactly one validated foreign key leads(converted_to_client_id) -> clients(id)
SELECT 'validated foreign keys on leads.converted_to_client_id: ' || count(*) AS problem
FROM pg_constraint AS k
WHERE k.contype = 'f' AND k.convalidated
  AND k.conrelid = to_regclass('leads') AND k.confrelid = to_regclass('clients')
  AND k.conkey = ARRAY[(SELECT attnum FROM pg_attribute
                        WHERE attrelid = to_regclass('leads') AND attname = 'converted_to_client_id')]
  AND k.confkey = ARRAY[(SELECT attnum FROM pg_attribute
                         WHERE attrelid = to_regclass('clients') AND attname = 'id')]
HAVING count(*) <> 1;

-- name: checks_in_force
-- kind: verify
-- description: the validated CHECKs of 001: conversion fields agree, a contact has exactly one parent
SELECT expected.name AS missing
FROM (VALUES ('leads', 'leads_conversion_consistent'),
             ('contacts', 'contacts_one_parent')) AS expected (tbl, name)
WHERE NOT EXISTS (
    SELECT 1 FROM pg_constraint AS k
    WHERE k.conrelid = to_regclass(expected.tbl) AND k.conname = expected.name
      AND k.contype = 'c' AND k.convalidated
);

-- name: conversion_indexes
-- kind: verify
-- description: indexes lead with leads.converted_to_client_id and leads.is_converted
SELECT 'no index led by leads.' || expected.name AS missing
FROM (VALUES ('converted_to_client_id'), ('is_converted')) AS expected (name)
WHERE NOT EXISTS (
    SELECT 1
    FROM pg_index AS i
    JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = to_regclass('leads') AND a.attname = expected.name AND i.indisvalid
);

-- name: views_present
-- kind: verify
-- description: the views lead_conversion_summary and client_lead_history exist
SELECT expected.name AS missing_view
FROM (VALUES ('lead_conversion_summary'), ('client_lead_history')) AS expected (name)
WHERE NOT EXISTS (
    SELECT 1 FROM pg_class AS c
    WHERE c.oid = to_regclass(expected.name) AND c.relkind = 'v'
);

-- name: user_triggers_restored
-- kind: verify
-- description: every user trigger 001 disabled for its backfill is back in its previous mode (checked inside the migration's transaction)
SELECT saved."table" || '.' || saved."trigger" || ' is ' || coalesce(g.tgenabled::text, 'gone')
       || ', was ' || saved.mode AS problem
FROM jsonb_to_recordset(coalesce(nullif(current_setting('aicrm.m001_triggers', true), ''), '[]')::jsonb)
         AS saved ("table" text, "trigger" text, mode text)
LEFT JOIN pg_trigger AS g
       ON g.tgrelid = to_regclass(saved."table") AND g.tgname = saved."trigger"
WHERE g.tgenabled IS DISTINCT FROM saved.mode::"char";
