-- Back to 004: 002's statement-level update-history triggers and its guard of converted
-- leads (one trigger for UPDATE and DELETE, no WHEN), leads' default fillfactor.
-- aicrm:lock leads, clients, contacts

-- step: fillfactor of leads back to the default
ALTER TABLE leads RESET (fillfactor);

-- step: statement-level update-history triggers and the guard of converted leads as in 002
DROP TRIGGER aicrm_history_update ON leads;
DROP TRIGGER aicrm_history_update ON clients;
DROP TRIGGER aicrm_history_update ON contacts;
DROP TRIGGER aicrm_guard_converted_lead ON leads;
DROP TRIGGER aicrm_guard_converted_lead_delete ON leads;
CREATE TRIGGER aicrm_guard_converted_lead
    BEFORE UPDATE OR DELETE ON leads
    FOR EACH ROW EXECUTE FUNCTION aicrm_guard_converted_lead();
CREATE TRIGGER aicrm_history_update AFTER UPDATE ON leads
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_update();
CREATE TRIGGER aicrm_history_update AFTER UPDATE ON clients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_update();
CREATE TRIGGER aicrm_history_update AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_update();

-- step: drop 005's functions
DROP FUNCTION aicrm_history_refresh(regclass);
DROP FUNCTION aicrm_history_update_row();
DROP FUNCTION aicrm_history_compare(regclass, boolean);
