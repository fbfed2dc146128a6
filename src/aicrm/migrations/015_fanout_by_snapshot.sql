-- Migration 015: the delivery worker fans events out, by snapshots (docs/events-and-webhooks.md,
-- "Fan-out"; issue #17's speed targets).
--   013's fan-out trigger wrote a webhook_deliveries row per (event, subscription) in
--   every writer's transaction: four index entries, two foreign-key checks, and a KEY
--   SHARE lock on the subscription's row in every writer at once (multixacts). Writers
--   now only write their events; the worker inserts the deliveries in batches.
--   * crm_events.xid: the writing transaction's id (pg_current_xact_id()). Old rows keep
--     NULL: 013's trigger fanned them out already.
--   * webhook_fanout: one row, the snapshot of the last fan-out. A fan-out takes the
--     events visible in its statement's snapshot and not in the stored one, then
--     stores its own (PgQ's batches by snapshots). Visibility follows commit order,
--     where event ids do not: an event of a transaction that began early and commits
--     late is fanned out when it commits, after the events it committed after.
--   * webhook_subscriptions.since: the snapshot of the subscription's creation; events
--     visible in it (committed before it) are not fanned out to it, as with 013's
--     trigger (replay reaches them).
--   * aicrm_events_fanout(): only the wake-up of 014 (NOTIFY when a worker lane sleeps
--     and a subscription is active). It no longer reads the new events (no transition
--     table).
-- aicrm:lock crm_events, webhook_subscriptions

-- step: each event's transaction
-- Nullable, then its default: no table rewrite (a volatile default in ADD COLUMN would
-- rewrite every row).
ALTER TABLE crm_events ADD COLUMN xid xid8;
ALTER TABLE crm_events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
-- Every row's xid is NULL until now: the build reads the table once, under the lock the
-- migration holds anyway for the column; the partial index stays as small as the
-- events written from now on.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX crm_events_xid_idx ON crm_events (xid) WHERE xid IS NOT NULL;
ALTER TABLE webhook_subscriptions ADD COLUMN since pg_snapshot;
ALTER TABLE webhook_subscriptions ALTER COLUMN since SET DEFAULT pg_current_snapshot();

-- step: the snapshot of the last fan-out
CREATE TABLE webhook_fanout (
    -- one row, locked by the fan-out that runs (the others skip it)
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    snapshot pg_snapshot NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO webhook_fanout (snapshot) VALUES (pg_current_snapshot());
COMMENT ON TABLE webhook_fanout IS
    'The snapshot of the delivery worker''s last fan-out: events visible in it have their '
    'deliveries (migration 015, docs/events-and-webhooks.md).';

-- step: the trigger only wakes a sleeping worker
DROP TRIGGER aicrm_events_fanout ON crm_events;
CREATE OR REPLACE FUNCTION aicrm_events_fanout() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_sleepers)
       AND EXISTS (SELECT 1 FROM webhook_subscriptions WHERE active) THEN
        PERFORM pg_notify('aicrm_events', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER aicrm_events_fanout AFTER INSERT ON crm_events
    FOR EACH STATEMENT EXECUTE FUNCTION aicrm_events_fanout();

DO $$  -- CREATE OR REPLACE dropped the pinned search_path: pinned again
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
    FOREACH p IN ARRAY ARRAY['SELECT', 'UPDATE'] LOOP
        PERFORM aicrm_grant_readers('webhook_fanout', ARRAY['api_keys']::regclass[], p, 'DELETE');
    END LOOP;
END $$;
