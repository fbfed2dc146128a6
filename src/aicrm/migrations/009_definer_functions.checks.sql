-- Checks of migration 009 (format: see aicrm/migrate/loader.py; design: docs/least-privilege.md).

-- name: history_functions_definer
-- kind: verify
-- description: the history trigger functions run as their owner with a pinned search_path (pg_temp last) and PUBLIC cannot execute them
SELECT p.proname || ' is not SECURITY DEFINER with a pinned search_path, or PUBLIC may execute it'
FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace
  AND p.proname IN ('aicrm_history_insert', 'aicrm_history_delete', 'aicrm_history_update',
                    'aicrm_history_update_row', 'aicrm_merge_moves_history',
                    'aicrm_merge_deletes_lead')
  AND (NOT p.prosecdef
       OR NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c
                      WHERE c LIKE 'search_path=pg_catalog, %, pg_temp')
       OR has_function_privilege('public', p.oid, 'EXECUTE'));

-- name: merge_triggers_present
-- kind: verify
-- description: a merge moves the merged lead's history and must delete it (triggers on lead_merges)
SELECT name || ' missing' FROM (VALUES ('aicrm_merge_moves_history'), ('aicrm_merge_deletes_lead')) AS t (name)
WHERE NOT EXISTS (
    SELECT 1 FROM pg_trigger g
    WHERE g.tgrelid = 'lead_merges'::regclass AND g.tgname = t.name AND g.tgenabled <> 'D'
);

-- name: views_security_invoker
-- kind: verify
-- description: on PostgreSQL 15+, aicrm's views run with the caller's rights (security_invoker), so row-level security holds through them
SELECT c.relname || ' is not security_invoker' FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relname IN ('lead_conversion_summary', 'client_lead_history', 'lead_status_periods')
  AND current_setting('server_version_num')::int >= 150000
  AND NOT coalesce('security_invoker=true' = ANY(c.reloptions), false);
