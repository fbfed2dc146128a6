-- Checks of migration 013 (format: see aicrm/migrate/loader.py; design: docs/events-and-webhooks.md).

-- name: event_triggers_present
-- kind: verify
-- description: leads, clients, contacts and activities write their events (insert, update and delete triggers), merges and the fan-out too; since 016 the history triggers of leads, clients and contacts write their events, and the writers wake the worker themselves
SELECT t.relname || '.' || t.tgname || ' missing' AS missing
FROM (VALUES ('leads', 'aicrm_events_insert'), ('leads', 'aicrm_events_update'),
             ('leads', 'aicrm_events_delete'), ('clients', 'aicrm_events_insert'),
             ('clients', 'aicrm_events_update'), ('clients', 'aicrm_events_delete'),
             ('contacts', 'aicrm_events_insert'), ('contacts', 'aicrm_events_update'),
             ('contacts', 'aicrm_events_delete'), ('activities', 'aicrm_events_insert'),
             ('activities', 'aicrm_events_update'), ('activities', 'aicrm_events_delete'),
             ('lead_merges', 'aicrm_events_merge'),
             ('crm_events', 'aicrm_events_fanout')) AS t (relname, tgname)
WHERE NOT EXISTS (
    SELECT 1 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = t.relname
      AND g.tgenabled <> 'D'
      AND (g.tgname = t.tgname
           -- 016: the history's trigger of the same operation, whose function writes events
           OR (t.relname IN ('leads', 'clients', 'contacts')
               AND g.tgname = replace(t.tgname, 'aicrm_events_', 'aicrm_history_')
               AND EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = g.tgfoid
                           AND position('crm_events' IN p.prosrc) > 0)))
)
-- 016: no trigger on crm_events; the writers call aicrm_events_wake()
AND NOT (t.relname = 'crm_events' AND to_regprocedure('aicrm_events_wake()') IS NOT NULL);

-- name: event_triggers_cover_columns
-- kind: verify
-- description: the update-event triggers compare every tracked column; after adding a column, run SELECT aicrm_events_refresh('table', 'kind')
SELECT c.relname || '.aicrm_events_update does not compare ' || a.attname AS missing
FROM pg_trigger g
JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relname IN ('leads', 'clients', 'contacts', 'activities')
  AND g.tgname = 'aicrm_events_update'
  AND a.attname <> 'updated_at' AND a.attname NOT LIKE 'ai\_%'
  AND position('old.' || quote_ident(a.attname::text) || ' IS DISTINCT FROM new.'
               || quote_ident(a.attname::text) IN pg_get_triggerdef(g.oid)) = 0;

-- name: event_functions_definer
-- kind: verify
-- description: the event trigger functions run as their owner with a pinned search_path (pg_temp last) and PUBLIC cannot execute them
SELECT p.proname || ' is not SECURITY DEFINER with a pinned search_path, or PUBLIC may execute it'
FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace
  AND p.proname IN ('aicrm_events_insert', 'aicrm_events_delete', 'aicrm_events_update',
                    'aicrm_events_merge', 'aicrm_events_fanout')
  AND (NOT p.prosecdef
       OR NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c
                      WHERE c LIKE 'search_path=pg_catalog, %, pg_temp')
       OR has_function_privilege('public', p.oid, 'EXECUTE'));
