-- Online migration 001, phase "contract", part 4: the switch, in one short
-- transaction under ACCESS EXCLUSIVE locks on leads, clients and contacts (taken
-- first, in that order, under a short lock_timeout, retried with backoff). Catalog
-- changes only: no row is read or written but 001's own bookkeeping. The runner
-- then writes the ledger row of 001 and runs 001's verification checks in this
-- same transaction: the ledger says 001 exactly when the schema is 001.

-- step: stop the online triggers and drop their functions
DROP TRIGGER IF EXISTS migration_001_online_lead_before ON leads;
DROP TRIGGER IF EXISTS migration_001_online_lead_after ON leads;
DROP TRIGGER IF EXISTS migration_001_online_client_after ON clients;
DROP TRIGGER IF EXISTS migration_001_online_contact_before ON contacts;
DROP FUNCTION IF EXISTS migration_001_online_lead_before();
DROP FUNCTION IF EXISTS migration_001_online_lead_after();
DROP FUNCTION IF EXISTS migration_001_online_client_after();
DROP FUNCTION IF EXISTS migration_001_online_contact_before();
DROP FUNCTION IF EXISTS migration_001_backfill(text, uuid, integer);
DROP FUNCTION IF EXISTS migration_001_sync_leads(uuid[], boolean, uuid[]);
DROP FUNCTION IF EXISTS migration_001_sync_clients(uuid[], boolean);
DROP FUNCTION IF EXISTS migration_001_resolve(uuid[]);
DROP INDEX IF EXISTS migration_001_online_archive_lead_idx;
DROP INDEX IF EXISTS migration_001_online_values_lead_idx;

-- step: record the legacy columns' types, constraints and indexes (as 001 does)
DELETE FROM migration_001_legacy_objects;
INSERT INTO migration_001_legacy_objects (table_name, column_name, kind, name, definition)
SELECT c.relname, a.attname, 'column', a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
WHERE (a.attrelid, a.attname) IN (('leads'::regclass, 'client_id'),
                                  ('clients'::regclass, 'converted_from_lead_id'))
  AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT c.relname, a.attname, 'constraint', k.conname, pg_get_constraintdef(k.oid)
FROM pg_constraint AS k
JOIN pg_class AS c ON c.oid = k.conrelid
JOIN pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
WHERE (a.attrelid, a.attname) IN (('leads'::regclass, 'client_id'),
                                  ('clients'::regclass, 'converted_from_lead_id'))
UNION ALL
SELECT DISTINCT c.relname, a.attname, 'index', i.relname, pg_get_indexdef(i.oid)
FROM pg_depend AS d
JOIN pg_class AS i ON i.oid = d.objid AND d.classid = 'pg_class'::regclass AND i.relkind = 'i'
JOIN pg_class AS c ON c.oid = d.refobjid
JOIN pg_attribute AS a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refclassid = 'pg_class'::regclass
  AND (a.attrelid, a.attname) IN (('leads'::regclass, 'client_id'),
                                  ('clients'::regclass, 'converted_from_lead_id'))
  AND i.relname <> 'migration_001_claims_idx'  -- the online run's own helper
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.oid
                  AND k.contype IN ('p', 'u', 'x'));

-- step: drop the circular foreign keys (found by their columns) and the legacy columns
DO $$
DECLARE
    k record;
BEGIN
    FOR k IN
        SELECT con.conrelid::regclass::text AS tbl, con.conname
        FROM pg_constraint AS con
        WHERE con.contype = 'f'
          AND ((con.conrelid = 'leads'::regclass AND con.confrelid = 'clients'::regclass
                AND (SELECT attnum FROM pg_attribute WHERE attrelid = 'leads'::regclass
                     AND attname = 'client_id') = ANY (con.conkey))
            OR (con.conrelid = 'clients'::regclass AND con.confrelid = 'leads'::regclass
                AND (SELECT attnum FROM pg_attribute WHERE attrelid = 'clients'::regclass
                     AND attname = 'converted_from_lead_id') = ANY (con.conkey)))
        ORDER BY 1, 2
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', k.tbl, k.conname);
    END LOOP;
END
$$;
ALTER TABLE leads DROP COLUMN client_id;
ALTER TABLE clients DROP COLUMN converted_from_lead_id;

-- step: create the views
CREATE VIEW lead_conversion_summary AS
SELECT coalesce(l.source, 'unknown') AS source,
       count(*) AS total_leads,
       count(*) FILTER (WHERE l.is_converted) AS converted_leads,
       count(*) FILTER (WHERE NOT l.is_converted) AS active_leads,
       count(*) FILTER (WHERE l.is_converted)::numeric / count(*) AS conversion_rate,
       avg(extract(epoch FROM l.conversion_date - l.created_at) / 86400)
           FILTER (WHERE l.is_converted) AS avg_days_to_convert
FROM leads AS l
GROUP BY coalesce(l.source, 'unknown');
COMMENT ON VIEW lead_conversion_summary IS
    'Leads per source (NULL as unknown): totals, converted, active (not converted), '
    'conversion_rate (0 to 1) and the mean days from created_at to conversion_date.';

CREATE VIEW client_lead_history AS
SELECT c.id AS client_id,
       c.name AS client_name,
       l.id AS lead_id,
       l.email AS lead_email,
       l.source AS lead_source,
       l.created_at AS lead_created_at,
       l.conversion_date,
       extract(epoch FROM l.conversion_date - l.created_at) / 86400 AS days_to_convert
FROM leads AS l
JOIN clients AS c ON c.id = l.converted_to_client_id
WHERE l.is_converted;
COMMENT ON VIEW client_lead_history IS
    'One row per converted lead: its client, the lead, and the days it took to convert.';
