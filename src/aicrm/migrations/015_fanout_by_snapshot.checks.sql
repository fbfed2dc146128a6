-- Checks of migration 015 (format: see aicrm/migrate/loader.py; design: docs/events-and-webhooks.md).

-- name: fanout_trigger_writes_no_deliveries
-- kind: verify
-- description: writers only write events: the delivery worker fans them out (webhook_fanout); the trigger only wakes a sleeping worker
SELECT 'aicrm_events_fanout still writes webhook_deliveries' AS finding
FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace
  AND p.proname = 'aicrm_events_fanout'
  AND position('webhook_deliveries' IN p.prosrc) > 0;

-- name: fanout_snapshot_one_row
-- kind: verify
-- description: webhook_fanout holds exactly one row, the snapshot of the last fan-out
SELECT 'webhook_fanout has ' || count(*) || ' rows, not 1' AS finding
FROM webhook_fanout
HAVING count(*) <> 1;
