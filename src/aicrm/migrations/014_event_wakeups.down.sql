-- Back to 013: the fan-out notifies in every transaction that writes a delivery again,
-- and the table of sleeping worker lanes goes (a running worker of 014 then fails to
-- register: stop the workers before downgrading).

-- step: 013's fan-out
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
    IF FOUND THEN
        PERFORM pg_notify('aicrm_events', '');
    END IF;
    RETURN NULL;
END $$;

DO $$  -- pinned again, as in 013
BEGIN
    EXECUTE format('ALTER FUNCTION aicrm_events_fanout() SET search_path = %s',
                   format('pg_catalog, %I, pg_temp', current_schema()));
    REVOKE EXECUTE ON FUNCTION aicrm_events_fanout() FROM PUBLIC;
END $$;

-- step: drop the sleeping lanes
DROP TABLE webhook_sleepers;
