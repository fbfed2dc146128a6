-- Migration 005: updates that change only ai_* columns cost (almost) nothing.
--   * history of UPDATEs on leads, clients and contacts is recorded by row-level
--     AFTER triggers whose WHEN clause compares the tracked columns (every column but
--     updated_at and the ai_* ones, which count only when aicrm.history_ai is on):
--     PostgreSQL skips a row whose tracked columns did not change before any trigger
--     function runs or any transition table is filled. 002's statement-level update
--     triggers materialised the old and new version of every updated row and diffed
--     them as JSON, also when a scoring run wrote only ai_score and ai_annotations.
--     Inserts and deletes keep 002's statement-level triggers.
--   * the guard of converted leads fires only for converted leads: on UPDATE when a
--     column it protects changed, on DELETE always (same function, same error);
--   * leads get fillfactor 50: rows inserted from now on leave half of their page free,
--     so that when a scoring run rewrites every row of a page, the new versions fit
--     next to the old ones and the update is HOT (no index reads an ai_* column: no
--     index entry is written). Existing pages are not rewritten (that would lock the
--     table); rows that move get the room. A table updated in full doubles anyway.
-- The WHEN clauses list the columns by name. aicrm_history_refresh(table) rebuilds
-- them from the catalogue: a later migration that adds a column to one of these
-- tables calls it, and the verification check 'update_triggers_cover_columns'
-- (aicrm db verify) reports a column the triggers do not compare.
-- aicrm:lock leads, clients, contacts

-- step: functions that build the WHEN clauses and record one updated row
-- ROW(old.a, old.b, ...) IS DISTINCT FROM ROW(new.a, new.b, ...) over the columns of
-- relation that are (ai = false) tracked always, or (ai = true) ai_* ones; NULL when
-- there is none.
CREATE FUNCTION aicrm_history_compare(relation regclass, ai boolean) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('ROW(%s) IS DISTINCT FROM ROW(%s)',
                  string_agg(format('OLD.%I', a.attname), ', ' ORDER BY a.attnum),
                  string_agg(format('NEW.%I', a.attname), ', ' ORDER BY a.attnum))
    FROM pg_attribute a
    WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname <> 'updated_at' AND (a.attname LIKE 'ai\_%') = ai
    HAVING count(*) > 0
$$;

-- One updated row whose tracked columns changed (the trigger's WHEN made sure):
-- {column: [old, new]} for the columns that changed, ai_* ones only when
-- aicrm.history_ai is on, updated_at never. One statement per row.
CREATE FUNCTION aicrm_history_update_row() RETURNS trigger
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

-- (Re)creates relation's update-history trigger and, for leads, the guard of converted
-- leads, with WHEN clauses over today's columns. Identifiers go through format('%I').
CREATE FUNCTION aicrm_history_refresh(relation regclass) RETURNS void
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

-- step: row-level update-history triggers on leads, clients and contacts; the guard of converted leads
DROP TRIGGER aicrm_guard_converted_lead ON leads;
CREATE TRIGGER aicrm_guard_converted_lead_delete BEFORE DELETE ON leads
    FOR EACH ROW WHEN (OLD.is_converted) EXECUTE FUNCTION aicrm_guard_converted_lead();
DROP TRIGGER aicrm_history_update ON leads;
DROP TRIGGER aicrm_history_update ON clients;
DROP TRIGGER aicrm_history_update ON contacts;
SELECT aicrm_history_refresh('leads');
SELECT aicrm_history_refresh('clients');
SELECT aicrm_history_refresh('contacts');

-- step: room for HOT updates in leads
ALTER TABLE leads SET (fillfactor = 50);
