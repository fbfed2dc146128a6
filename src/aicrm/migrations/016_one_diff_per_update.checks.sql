-- Checks of migration 016 (format: see aicrm/migrate/loader.py; design: docs/events-and-webhooks.md).

-- name: history_writes_events
-- kind: verify
-- description: the history trigger functions write the events of leads, clients and contacts, which have no event trigger of their own (that would announce each change twice); after adding a column, run SELECT aicrm_history_refresh('table')
SELECT finding FROM (
    SELECT p.proname || ' does not write events' AS finding
    FROM pg_proc p
    WHERE p.pronamespace = current_schema()::regnamespace
      AND p.proname IN ('aicrm_history_update_row', 'aicrm_history_insert', 'aicrm_history_delete')
      AND position('crm_events' IN p.prosrc) = 0
    UNION ALL
    SELECT c.relname || '.' || g.tgname || ' would announce its changes twice'
    FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
    WHERE c.relnamespace = current_schema()::regnamespace
      AND c.relname IN ('leads', 'clients', 'contacts') AND g.tgname LIKE 'aicrm\_events\_%'
) AS f;

-- name: writers_wake_the_worker
-- kind: verify
-- description: every function that writes events asks for the wake-up of a sleeping delivery worker (aicrm_events_wake, once per transaction)
SELECT p.proname || ' writes events but never calls aicrm_events_wake' AS finding
FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace
  AND position('INSERT INTO crm_events' IN p.prosrc) > 0
  AND position('aicrm_events_wake()' IN p.prosrc) = 0
  AND p.proname <> 'aicrm_history_update_row_rebuild';
