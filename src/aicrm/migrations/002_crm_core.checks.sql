-- Checks of migration 002 (format: see aicrm/migrate/loader.py).

-- name: unknown_lead_status
-- kind: integrity
-- severity: resolvable
-- description: open leads whose status is not new, contacted, qualified, unqualified or lost: kept as custom statuses by 008 (the runner carries them through 002's fixed list), or mapped with --map-status OLD=NEW; a run stopping before 008 refuses them
SELECT id, status FROM leads
WHERE NOT is_converted
  AND status NOT IN ('new', 'contacted', 'qualified', 'unqualified', 'lost', 'converted');

-- name: converted_status_without_conversion
-- kind: integrity
-- severity: resolvable
-- description: leads with status 'converted' but no client they converted to: the run is refused before its checks unless they are mapped (--map-status converted=qualified, aicrm/migrate/status_map.py)
SELECT id FROM leads WHERE status = 'converted' AND NOT is_converted;

-- name: converted_lead_status_set
-- kind: integrity
-- severity: resolvable
-- description: converted leads whose status is not 'converted' yet (set to 'converted')
SELECT id, status FROM leads WHERE is_converted AND status IS DISTINCT FROM 'converted';

-- name: history_triggers_present
-- kind: verify
-- description: history triggers record leads, clients and contacts
SELECT t.table_name || ' lacks ' || t.trigger_name AS missing
FROM (VALUES ('leads'), ('clients'), ('contacts')) AS tb (table_name)
CROSS JOIN LATERAL (VALUES (tb.table_name, 'aicrm_history_insert'),
                           (tb.table_name, 'aicrm_history_update'),
                           (tb.table_name, 'aicrm_history_delete')) AS t (table_name, trigger_name)
WHERE NOT EXISTS (
    SELECT 1 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
    WHERE c.relname = t.table_name AND g.tgname = t.trigger_name
      AND c.relnamespace = current_schema()::regnamespace
);

-- name: converted_leads_guarded
-- kind: verify
-- description: converted leads are guarded read-only
SELECT 'aicrm_guard_converted_lead missing' WHERE NOT EXISTS (
    SELECT 1 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
    WHERE c.relname = 'leads' AND g.tgname = 'aicrm_guard_converted_lead'
      AND c.relnamespace = current_schema()::regnamespace AND g.tgenabled <> 'D'
);

-- name: statuses_consistent
-- kind: verify
-- description: every converted lead has status 'converted' and no other lead has
SELECT id FROM leads WHERE (status = 'converted') IS DISTINCT FROM is_converted;
