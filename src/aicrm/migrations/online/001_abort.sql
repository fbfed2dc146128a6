-- Online migration 001: back to 000 from an unfinished online run, whatever its
-- phase (`aicrm db downgrade 000`). One transaction, under ACCESS EXCLUSIVE locks on
-- leads, clients and contacts taken first. The legacy columns are still there and
-- were never written by the run; only contacts changed (orphaned references cleared,
-- contacts without a parent moved, lead links of contacts with both parents
-- cleared), and each of those changes is in 001's tables: put them back, then drop
-- everything the run added. Runs with session_replication_role = replica when the
-- runner may set it (user triggers do not fire, no updated_at changes).

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

-- step: drop 001's constraints (the contacts CHECK would refuse the links put back)
ALTER TABLE contacts DROP CONSTRAINT IF EXISTS contacts_one_parent;
ALTER TABLE leads
    DROP CONSTRAINT IF EXISTS leads_conversion_consistent,
    DROP CONSTRAINT IF EXISTS leads_converted_to_client_id_fkey;

-- step: put back the moved contacts and the contacts' cleared links
DO $$
DECLARE
    cols text;
BEGIN
    IF to_regclass('migration_001_orphan_contacts') IS NOT NULL THEN
        SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute AS a
        WHERE a.attrelid = 'contacts'::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attgenerated = ''
          AND EXISTS (SELECT 1 FROM pg_attribute AS o
                      WHERE o.attrelid = 'migration_001_orphan_contacts'::regclass
                        AND o.attname = a.attname AND NOT o.attisdropped);
        EXECUTE format('INSERT INTO contacts (%s) OVERRIDING SYSTEM VALUE SELECT %s '
                       'FROM migration_001_orphan_contacts', cols, cols);
    END IF;
    IF to_regclass('migration_001_link_archive') IS NOT NULL THEN
        UPDATE contacts AS c SET lead_id = a.referenced_id
        FROM migration_001_link_archive AS a
        WHERE a.table_name = 'contacts' AND a.column_name = 'lead_id' AND a.row_id = c.id;
        UPDATE contacts AS c SET client_id = a.referenced_id
        FROM migration_001_link_archive AS a
        WHERE a.table_name = 'contacts' AND a.column_name = 'client_id' AND a.row_id = c.id;
    END IF;
    IF to_regclass('migration_001_legacy_values') IS NOT NULL THEN
        UPDATE contacts AS c SET lead_id = v.legacy_value
        FROM migration_001_legacy_values AS v
        WHERE v.table_name = 'contacts' AND v.column_name = 'lead_id' AND v.row_id = c.id;
    END IF;
END
$$;

-- step: drop the conversion fields (their indexes go with them), the helper index and 001's tables
DROP INDEX IF EXISTS migration_001_claims_idx;
DROP INDEX IF EXISTS leads_is_converted_idx;
DROP INDEX IF EXISTS leads_converted_to_client_id_idx;
ALTER TABLE leads
    DROP COLUMN IF EXISTS converted_to_client_id,
    DROP COLUMN IF EXISTS conversion_date,
    DROP COLUMN IF EXISTS is_converted;
DROP TABLE IF EXISTS migration_001_link_archive;
DROP TABLE IF EXISTS migration_001_orphan_contacts;
DROP TABLE IF EXISTS migration_001_legacy_values;
DROP TABLE IF EXISTS migration_001_legacy_objects;
