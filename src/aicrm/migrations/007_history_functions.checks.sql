-- Checks of migration 007 (format: see aicrm/migrate/loader.py).

-- name: history_triggers_match_columns
-- kind: verify
-- description: the insert and delete history triggers of leads, clients and contacts list exactly their updated_at and ai_* columns, and aicrm_history_update_row() compares each of their columns; after adding or dropping a column, run SELECT aicrm_history_refresh('table')
SELECT c.relname || '.' || g.tgname || ' does not list the columns to leave out: '
       || array_to_string(aicrm_history_untracked(c.oid), ', ') AS stale
FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relname IN ('leads', 'clients', 'contacts')
  AND g.tgname IN ('aicrm_history_insert', 'aicrm_history_delete')
  AND position(format('%s(%s)', g.tgname, (
          SELECT string_agg(quote_literal(u), ', ') FROM unnest(aicrm_history_untracked(c.oid)) AS u
      )) IN pg_get_triggerdef(g.oid)) = 0
UNION ALL
SELECT 'aicrm_history_update_row() does not compare ' || c.relname || '.' || a.attname
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relname IN ('leads', 'clients', 'contacts') AND a.attname <> 'updated_at'
  AND position(format('OLD.%s IS DISTINCT FROM NEW.%s', quote_ident(a.attname), quote_ident(a.attname))
               IN (SELECT p.prosrc FROM pg_proc p
                   WHERE p.oid = to_regprocedure('aicrm_history_update_row()'))) = 0;
