-- Back to 014: the fan-out trigger writes the deliveries again. What the worker has not
-- fanned out yet (committed since its last fan-out) is fanned out here first, under the
-- lock on crm_events that keeps writers out until the old trigger is back.
-- aicrm:lock crm_events, webhook_subscriptions

-- step: fan out what is left
INSERT INTO webhook_deliveries (subscription_id, event_id, record_id)
SELECT s.id, e.id, e.record_id
FROM webhook_fanout f
JOIN crm_events e ON e.xid >= pg_snapshot_xmin(f.snapshot)
                 AND NOT pg_visible_in_snapshot(e.xid, f.snapshot)
JOIN webhook_subscriptions s
  ON s.active AND (e.type = ANY (s.events) OR '*' = ANY (s.events)
                   OR e.record_kind || '.*' = ANY (s.events))
 AND (s.since IS NULL OR NOT pg_visible_in_snapshot(e.xid, s.since))
ORDER BY e.id
ON CONFLICT (subscription_id, event_id) DO NOTHING;

-- step: 014's fan-out trigger
DROP TRIGGER aicrm_events_fanout ON crm_events;
CREATE OR REPLACE FUNCTION aicrm_events_fanout() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_subscriptions WHERE active) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (subscription_id, event_id, record_id)
    SELECT s.id, e.id, e.record_id
    FROM new_events e
    JOIN webhook_subscriptions s
      ON s.active AND (e.type = ANY (s.events) OR '*' = ANY (s.events)
                       OR e.record_kind || '.*' = ANY (s.events))
    ORDER BY e.id;
    IF FOUND AND EXISTS (SELECT 1 FROM webhook_sleepers) THEN
        PERFORM pg_notify('aicrm_events', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER aicrm_events_fanout AFTER INSERT ON crm_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION aicrm_events_fanout();

DO $$  -- pinned again, as in 014
BEGIN
    EXECUTE format('ALTER FUNCTION aicrm_events_fanout() SET search_path = %s',
                   format('pg_catalog, %I, pg_temp', current_schema()));
    REVOKE EXECUTE ON FUNCTION aicrm_events_fanout() FROM PUBLIC;
END $$;

-- step: drop the snapshots and the events' transactions
DROP TABLE webhook_fanout;
ALTER TABLE webhook_subscriptions DROP COLUMN since;
-- The migration holds crm_events locked (the down file's own lock).
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX crm_events_xid_idx;
ALTER TABLE crm_events DROP COLUMN xid;
