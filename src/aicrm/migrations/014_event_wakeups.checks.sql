-- Checks of migration 014 (format: see aicrm/migrate/loader.py; design: docs/events-and-webhooks.md).

-- name: fanout_notifies_sleepers_only
-- kind: verify
-- description: the fan-out notifies only when a delivery worker lane sleeps (webhook_sleepers); 013's function notified every writer
SELECT 'aicrm_events_fanout does not consult webhook_sleepers' AS finding
FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace
  AND p.proname = 'aicrm_events_fanout'
  AND position('webhook_sleepers' IN p.prosrc) = 0;
