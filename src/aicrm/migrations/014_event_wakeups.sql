-- Migration 014: the fan-out wakes the delivery worker only when one sleeps
-- (docs/events-and-webhooks.md, "Waking up"; issue #17's speed targets).
--   013's fan-out sent pg_notify('aicrm_events') in every transaction that wrote a
--   delivery. A notifying transaction takes one cluster-wide lock from just before its
--   commit until after it, WAL flush included: notifying writers commit one at a
--   time, without group commit. A worker that is busy claiming needs no wake-up.
--   * webhook_sleepers: a row per waiting worker lane (its LISTEN session's pid),
--     written by the lane before it sleeps and deleted when it wakes. UNLOGGED: no WAL
--     for these rows, and a crash empties it (the lanes are gone too).
--   * aicrm_events_fanout(): NOTIFY only when a lane sleeps. A writer that looked just
--     before a lane registered is caught by the lane's first, short wait (a second
--     look at what is due); a longer transaction's deliveries wait at most --poll.
--   A lane killed while asleep leaves its row: writers notify as in 013 until the next
--   lane that goes to sleep deletes rows of sessions that no longer exist.

-- step: the sleeping lanes
CREATE UNLOGGED TABLE webhook_sleepers (
    -- a backend's pid, as pg_backend_pid() returns it (an integer)
    -- squawk-ignore prefer-bigint-over-int
    pid integer PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_sleepers IS
    'Delivery worker lanes waiting for NOTIFY aicrm_events, by backend pid: the fan-out '
    'notifies only when one waits (migration 014, docs/events-and-webhooks.md).';

-- step: the fan-out notifies only a sleeping worker
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

DO $$  -- CREATE OR REPLACE dropped 013's pinned search_path: pinned again
BEGIN
    EXECUTE format('ALTER FUNCTION aicrm_events_fanout() SET search_path = %s',
                   format('pg_catalog, %I, pg_temp', current_schema()));
    REVOKE EXECUTE ON FUNCTION aicrm_events_fanout() FROM PUBLIC;
END $$;

-- step: grants: the roles that manage webhooks (and so run the worker)
DO $$
DECLARE
    p text;
BEGIN
    FOREACH p IN ARRAY ARRAY['SELECT', 'INSERT', 'DELETE'] LOOP
        PERFORM aicrm_grant_readers('webhook_sleepers', ARRAY['api_keys']::regclass[], p, 'DELETE');
    END LOOP;
END $$;
