-- Back to 006: 005's aicrm_history_update_row() and aicrm_history_refresh(), 002's
-- insert and delete history functions, and their triggers without arguments.
-- aicrm:lock leads, clients, contacts

-- step: 002's insert and delete history, without arguments
CREATE OR REPLACE FUNCTION aicrm_history_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    who text := aicrm_actor();
    hidden text[] := aicrm_history_hidden(TG_RELID);
BEGIN
    INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
    SELECT TG_TABLE_NAME, n.id, 'insert', who, to_jsonb(n) - hidden FROM new_rows n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION aicrm_history_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    who text := aicrm_actor();
    hidden text[] := aicrm_history_hidden(TG_RELID);
BEGIN
    INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
    SELECT TG_TABLE_NAME, o.id, 'delete', who, to_jsonb(o) - hidden FROM old_rows o;
    RETURN NULL;
END $$;

DROP TRIGGER aicrm_history_insert ON leads;
DROP TRIGGER aicrm_history_delete ON leads;
DROP TRIGGER aicrm_history_insert ON clients;
DROP TRIGGER aicrm_history_delete ON clients;
DROP TRIGGER aicrm_history_insert ON contacts;
DROP TRIGGER aicrm_history_delete ON contacts;
CREATE TRIGGER aicrm_history_insert AFTER INSERT ON leads
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_insert();
CREATE TRIGGER aicrm_history_delete AFTER DELETE ON leads
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_delete();
CREATE TRIGGER aicrm_history_insert AFTER INSERT ON clients
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_insert();
CREATE TRIGGER aicrm_history_delete AFTER DELETE ON clients
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_delete();
CREATE TRIGGER aicrm_history_insert AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_insert();
CREATE TRIGGER aicrm_history_delete AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_delete();

-- step: 005's update history and refresh
CREATE OR REPLACE FUNCTION aicrm_history_update_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);
BEGIN
    INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
    SELECT TG_TABLE_NAME, NEW.id, 'update', aicrm_actor(), d.diff
    FROM (
        SELECT jsonb_object_agg(n.key, jsonb_build_array(old_row -> n.key, n.value)) AS diff
        FROM jsonb_each(to_jsonb(NEW)) AS n
        WHERE (old_row -> n.key) IS DISTINCT FROM n.value AND aicrm_history_tracked(n.key)
    ) AS d
    WHERE d.diff IS NOT NULL;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION aicrm_history_refresh(relation regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tracked text := aicrm_history_compare(relation, false);
    ai text := aicrm_history_compare(relation, true);
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS aicrm_history_update ON %s', relation);
    EXECUTE format(
        'CREATE TRIGGER aicrm_history_update AFTER UPDATE ON %s FOR EACH ROW '
        'WHEN (%s%s) EXECUTE FUNCTION aicrm_history_update_row()',
        relation, coalesce(tracked, 'false'),
        CASE WHEN ai IS NULL THEN ''
             ELSE format(' OR (coalesce(current_setting(%L, true), %L) = %L AND %s)',
                         'aicrm.history_ai', '', 'on', ai) END);
    IF relation = 'leads'::regclass THEN
        EXECUTE 'DROP TRIGGER IF EXISTS aicrm_guard_converted_lead ON leads';
        EXECUTE format(
            'CREATE TRIGGER aicrm_guard_converted_lead BEFORE UPDATE ON leads FOR EACH ROW '
            'WHEN (OLD.is_converted AND %s) EXECUTE FUNCTION aicrm_guard_converted_lead()',
            coalesce(tracked, 'false'));
    END IF;
END $$;

DROP FUNCTION aicrm_history_update_row_rebuild();
DROP FUNCTION aicrm_history_changes_sql(regclass);
DROP FUNCTION aicrm_history_untracked(regclass);
