-- Back to 001: drops the CRM core's triggers, functions, views, tables and indexes,
-- and gives the leads that 002 marked 'converted' their earlier statuses back.
-- The history and the merge records are dropped with their tables: take the backup
-- (the runner does) if you may want them again.
-- aicrm:lock leads, clients, contacts

-- step: drop indexes
DROP INDEX leads_email_lower_idx, leads_search_idx, leads_attributes_idx, leads_created_idx,
    leads_status_idx, leads_source_idx, clients_search_idx, clients_attributes_idx,
    clients_created_idx, contacts_lead_id_idx, contacts_client_id_idx, contacts_email_lower_idx, contacts_search_idx,
    contacts_attributes_idx, contacts_created_idx;

-- step: drop history, merges and guards
DROP VIEW lead_status_periods;
DROP TRIGGER aicrm_history_insert ON leads;
DROP TRIGGER aicrm_history_update ON leads;
DROP TRIGGER aicrm_history_delete ON leads;
DROP TRIGGER aicrm_history_insert ON clients;
DROP TRIGGER aicrm_history_update ON clients;
DROP TRIGGER aicrm_history_delete ON clients;
DROP TRIGGER aicrm_history_insert ON contacts;
DROP TRIGGER aicrm_history_update ON contacts;
DROP TRIGGER aicrm_history_delete ON contacts;
DROP TRIGGER aicrm_guard_converted_lead ON leads;
DROP TABLE lead_merges;
DROP TABLE crm_history;
ALTER TABLE leads DROP CONSTRAINT leads_status_known,
    DROP CONSTRAINT leads_status_converted_iff_converted;

-- step: give converted leads back the statuses they had before 002
-- (user triggers quieted, so no updated_at is restamped; each gets its mode back)
CREATE TEMP TABLE aicrm_002_quieted ON COMMIT DROP AS
SELECT c.relname AS table_name, t.tgname AS trigger_name, t.tgenabled AS mode
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = 'leads'
  AND NOT t.tgisinternal AND t.tgenabled <> 'D';
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM aicrm_002_quieted LOOP
        EXECUTE format('ALTER TABLE %I DISABLE TRIGGER %I', r.table_name, r.trigger_name);
    END LOOP;
END $$;
UPDATE leads l SET status = b.old_status
FROM migration_002_status_backfill b WHERE l.id = b.lead_id;
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM aicrm_002_quieted LOOP
        EXECUTE format(
            'ALTER TABLE %I ENABLE %s TRIGGER %I',
            r.table_name,
            CASE r.mode WHEN 'A' THEN 'ALWAYS' WHEN 'R' THEN 'REPLICA' ELSE '' END,
            r.trigger_name
        );
    END LOOP;
END $$;
DROP TABLE migration_002_status_backfill;
DROP FUNCTION aicrm_history_insert(), aicrm_history_update(), aicrm_history_delete(),
    aicrm_history_hidden(oid), aicrm_history_tracked(text),
    aicrm_actor(),
    aicrm_guard_converted_lead(), aicrm_person_document(text, text, text, text),
    aicrm_client_document(text, text);
