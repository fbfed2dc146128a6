-- Checks of migration 005 (format: see aicrm/migrate/loader.py).

-- name: update_triggers_cover_columns
-- kind: verify
-- description: the update-history triggers (and the guard of converted leads) compare every column they must; after adding a column, run SELECT aicrm_history_refresh('table')
SELECT t.relname || '.' || t.tgname || ' does not compare ' || a.attname AS missing
FROM (
    SELECT c.oid AS relid, c.relname, g.tgname, pg_get_triggerdef(g.oid) AS def
    FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
    WHERE c.relnamespace = current_schema()::regnamespace
      AND ((c.relname IN ('leads', 'clients', 'contacts') AND g.tgname = 'aicrm_history_update')
           OR (c.relname = 'leads' AND g.tgname = 'aicrm_guard_converted_lead'))
) AS t
JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped
WHERE a.attname <> 'updated_at'
  AND NOT (t.tgname = 'aicrm_guard_converted_lead' AND a.attname LIKE 'ai\_%')
  AND position('old.' || quote_ident(a.attname::text) || ' IS DISTINCT FROM new.'
               || quote_ident(a.attname::text) IN t.def) = 0;

-- name: update_triggers_row_level
-- kind: verify
-- description: leads, clients and contacts record updates with the row-level trigger of 005
SELECT c.relname || ' lacks the row-level aicrm_history_update' AS missing
FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relname IN ('leads', 'clients', 'contacts')
  AND NOT EXISTS (
      SELECT 1 FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
      WHERE g.tgrelid = c.oid AND g.tgname = 'aicrm_history_update'
        AND p.proname = 'aicrm_history_update_row' AND g.tgenabled <> 'D'
  );

-- name: converted_leads_delete_guarded
-- kind: verify
-- description: deleting a converted lead is refused
SELECT 'aicrm_guard_converted_lead_delete missing' WHERE NOT EXISTS (
    SELECT 1 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
    WHERE c.relname = 'leads' AND g.tgname = 'aicrm_guard_converted_lead_delete'
      AND c.relnamespace = current_schema()::regnamespace AND g.tgenabled <> 'D'
);
