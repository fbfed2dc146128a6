-- Back to 011: activities, assignment rules and users go, with the owners of leads and
-- clients and the users of API keys (their values are lost: owners and activities are
-- 012's). The history triggers are rebuilt for the columns that remain; 009's merge
-- trigger function comes back. The history rows that recorded ownership changes stay.
-- aicrm:lock leads, clients, contacts, api_keys, lead_merges

-- step: 009's merge trigger function (history only)
CREATE OR REPLACE FUNCTION aicrm_merge_moves_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF NEW.kept_lead_id = NEW.merged_lead_id OR NOT EXISTS (
        SELECT 1 FROM leads l WHERE l.id = NEW.merged_lead_id AND NOT l.is_converted
    ) THEN
        RAISE EXCEPTION 'a merge records an open lead, other than the kept one, that it deletes'
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE crm_history SET row_id = NEW.kept_lead_id
    WHERE table_name = 'leads' AND row_id = NEW.merged_lead_id;
    RETURN NEW;
END $$;
DO $$
DECLARE
    path text := format('pg_catalog, %I, pg_temp', current_schema());
BEGIN
    EXECUTE format('ALTER FUNCTION aicrm_merge_moves_history() SET search_path = %s', path);
END $$;
REVOKE EXECUTE ON FUNCTION aicrm_merge_moves_history() FROM PUBLIC;

-- step: activities and the conversion's trigger
DROP TRIGGER aicrm_conversion_moves_activities ON leads;
DROP FUNCTION aicrm_conversion_moves_activities();
DROP TABLE activities;

-- step: assignment rules
DROP FUNCTION aicrm_next_owner(text);
DROP TABLE assignment_rules;

-- step: owners and the users of API keys
-- The row-level history and guard triggers name owner_id in their WHEN clauses, so
-- they go first; aicrm_history_refresh below creates them again for the columns left.
DROP TRIGGER aicrm_history_update ON leads;
DROP TRIGGER aicrm_history_update ON clients;
DROP TRIGGER aicrm_guard_converted_lead ON leads;
ALTER TABLE leads DROP COLUMN owner_id;
ALTER TABLE clients DROP COLUMN owner_id;
ALTER TABLE api_keys DROP COLUMN user_id;
SELECT aicrm_history_refresh('leads');
SELECT aicrm_history_refresh('clients');

-- step: users
DROP TABLE users;
