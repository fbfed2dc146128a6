-- Migration 013: the event stream and webhooks (docs/events-and-webhooks.md; issue #17).
--   * crm_events: a transactional outbox. Triggers on leads, clients, contacts and
--     activities (012)
--     write one event per created, updated or deleted record in the same
--     transaction as the change: an event exists if and only if its change committed.
--     Types: lead.created, lead.updated, lead.deleted, lead.converted (the update of a
--     conversion), lead.merged (a merge: the merged lead's last event, instead of
--     lead.deleted), client.*, contact.* and activity.* likewise (an activity that
--     follows its lead into a client or a kept lead is activity.updated). An update emits an event only
--     when a column the history tracks changed (not for ai_* or updated_at alone, so
--     a scoring run announces nothing), with {column: [old, new]} of what changed.
--   * webhook_subscriptions and webhook_deliveries: an event that a subscription
--     wants gets a delivery row in the same transaction (fan-out by a trigger on
--     crm_events), and pg_notify('aicrm_events') wakes the delivery worker.
--   * the trigger functions run as their owner (SECURITY DEFINER, search_path pinned
--     with pg_temp last, EXECUTE revoked from PUBLIC), like 009's history functions:
--     any role that may write leads, clients or contacts gets its events written,
--     without any privilege on the outbox.
--   * grants computed from the catalogue (009's aicrm_grant_readers): crm_events is
--     readable by the roles that read leads, clients and contacts (without row-level
--     security); the webhook tables belong to the roles that manage API keys.
-- aicrm_events_refresh(table, kind) rebuilds a table's event triggers from its columns:
-- a migration that adds a column to leads, clients, contacts or activities calls it next to
-- aicrm_history_refresh(table); the check 'event_triggers_cover_columns' reports a
-- column the update trigger does not compare.
-- aicrm:lock leads, clients, contacts, activities, lead_merges

-- step: the outbox, the subscriptions and the deliveries
CREATE TABLE crm_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL DEFAULT gen_random_uuid() CONSTRAINT crm_events_event_id_key UNIQUE,
    type text NOT NULL CHECK (type ~ '^[a-z]+\.[a-z]+$'),
    record_kind text NOT NULL CHECK (record_kind IN ('lead', 'client', 'contact', 'activity')),
    record_id uuid NOT NULL,
    -- {"record": the row as it is after the change (before it, for a deletion),
    --  "changes": {column: [old, new]} for an update, and what the type adds}
    payload jsonb NOT NULL,
    actor text NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT crm_events_type_matches_kind CHECK (split_part(type, '.', 1) = record_kind)
);
-- Indexes of tables created just above (empty, in this transaction): nothing to block.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX crm_events_occurred_idx ON crm_events (occurred_at, id);
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX crm_events_record_idx ON crm_events (record_id, id);
COMMENT ON TABLE crm_events IS
    'The event stream (transactional outbox): one row per change of a lead, client, '
    'contact or activity, written by triggers in the transaction of the change (docs/events-and-webhooks.md).';

CREATE TABLE webhook_subscriptions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url text NOT NULL CHECK (url ~ '^https?://[^\s]+$'),
    -- event types, 'kind.*' or '*'
    events text[] NOT NULL CHECK (cardinality(events) > 0),
    -- the HMAC-SHA256 key; readable only by the roles that manage webhooks
    secret text NOT NULL CHECK (length(secret) >= 16),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    subscription_id bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_id bigint NOT NULL REFERENCES crm_events (id),
    record_id uuid NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    -- a count of HTTP attempts, a handful before a delivery is dead
    -- squawk-ignore prefer-bigint-over-int
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    delivered_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, event_id),
    CONSTRAINT webhook_deliveries_delivered_at CHECK ((state = 'delivered') = (delivered_at IS NOT NULL))
);
-- what is due, and (per subscription and record) what must wait for an earlier event
-- (new tables, as above)
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at, event_id)
    WHERE state = 'pending';
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX webhook_deliveries_record_idx ON webhook_deliveries (subscription_id, record_id, event_id)
    WHERE state = 'pending';
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);

-- step: the event trigger functions (owner's rights)
-- INSERT and DELETE: statement-level, one INSERT … SELECT per statement (a 1M-row
-- import writes its events set-based). TG_ARGV[0] is the record kind.
CREATE FUNCTION aicrm_events_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    SELECT TG_ARGV[0] || '.created', TG_ARGV[0], n.id, jsonb_build_object('record', to_jsonb(n)),
           aicrm_actor()
    FROM new_rows n;
    RETURN NULL;
END $$;

-- A lead deleted by a merge (recorded in lead_merges by this transaction, before the
-- DELETE) has announced lead.merged instead.
CREATE FUNCTION aicrm_events_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    SELECT TG_ARGV[0] || '.deleted', TG_ARGV[0], o.id, jsonb_build_object('record', to_jsonb(o)),
           aicrm_actor()
    FROM old_rows o
    WHERE TG_ARGV[0] <> 'lead'
       OR NOT EXISTS (SELECT 1 FROM lead_merges m WHERE m.merged_lead_id = o.id);
    RETURN NULL;
END $$;

-- UPDATE: row-level, fired only when a tracked column changed (the trigger's WHEN).
-- A lead's conversion is lead.converted, with the client it went to.
CREATE FUNCTION aicrm_events_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);
    new_row jsonb := to_jsonb(NEW);
    changes jsonb;
    converted boolean := TG_ARGV[0] = 'lead'
        AND (new_row ->> 'is_converted')::boolean AND NOT (old_row ->> 'is_converted')::boolean;
BEGIN
    SELECT coalesce(jsonb_object_agg(n.key, jsonb_build_array(old_row -> n.key, n.value)), '{}')
    INTO changes
    FROM jsonb_each(new_row) AS n
    WHERE (old_row -> n.key) IS DISTINCT FROM n.value
      AND n.key <> 'updated_at' AND n.key NOT LIKE 'ai\_%';
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    VALUES (TG_ARGV[0] || CASE WHEN converted THEN '.converted' ELSE '.updated' END,
            TG_ARGV[0], NEW.id,
            jsonb_build_object('record', new_row, 'changes', changes)
                || CASE WHEN converted
                        THEN jsonb_build_object('client_id', new_row -> 'converted_to_client_id')
                        ELSE '{}' END,
            aicrm_actor());
    RETURN NULL;
END $$;

-- A merge: lead.merged for the merged lead, naming the lead it went into.
CREATE FUNCTION aicrm_events_merge() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    VALUES ('lead.merged', 'lead', NEW.merged_lead_id,
            jsonb_build_object('record', NEW.merged_row, 'kept_lead_id', NEW.kept_lead_id,
                               'merged_lead_id', NEW.merged_lead_id),
            NEW.actor);
    RETURN NULL;
END $$;

-- Fan-out: a delivery for each active subscription that wants the event, in the same
-- transaction; the worker is woken only when there is something to deliver.
CREATE FUNCTION aicrm_events_fanout() RETURNS trigger
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

DO $$  -- pinned like 009's history functions (the schema's name is known only here)
DECLARE
    f text;
    path text := format('pg_catalog, %I, pg_temp', current_schema());
BEGIN
    FOREACH f IN ARRAY ARRAY['aicrm_events_insert()', 'aicrm_events_delete()',
                             'aicrm_events_update()', 'aicrm_events_merge()',
                             'aicrm_events_fanout()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %s', f, path);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- (Re)creates relation's event triggers; the update trigger's WHEN compares the
-- columns the history tracks (005's aicrm_history_compare: all but updated_at and ai_*).
CREATE FUNCTION aicrm_events_refresh(relation regclass, kind text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS aicrm_events_insert ON %s', relation);
    EXECUTE format(
        'CREATE TRIGGER aicrm_events_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS '
        'new_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_events_insert(%L)', relation, kind);
    EXECUTE format('DROP TRIGGER IF EXISTS aicrm_events_delete ON %s', relation);
    EXECUTE format(
        'CREATE TRIGGER aicrm_events_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS '
        'old_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_events_delete(%L)', relation, kind);
    EXECUTE format('DROP TRIGGER IF EXISTS aicrm_events_update ON %s', relation);
    EXECUTE format(
        'CREATE TRIGGER aicrm_events_update AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) '
        'EXECUTE FUNCTION aicrm_events_update(%L)',
        relation, coalesce(aicrm_history_compare(relation, false), 'false'), kind);
END $$;
REVOKE EXECUTE ON FUNCTION aicrm_events_refresh(regclass, text) FROM PUBLIC;

-- step: the triggers
SELECT aicrm_events_refresh('leads', 'lead');
SELECT aicrm_events_refresh('clients', 'client');
SELECT aicrm_events_refresh('contacts', 'contact');
SELECT aicrm_events_refresh('activities', 'activity');
CREATE TRIGGER aicrm_events_merge AFTER INSERT ON lead_merges
    FOR EACH ROW EXECUTE FUNCTION aicrm_events_merge();
CREATE TRIGGER aicrm_events_fanout AFTER INSERT ON crm_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION aicrm_events_fanout();
-- The deletion trigger asks whether a deleted lead was merged: by merged_lead_id.
-- lead_merges is small and the whole migration is one transaction that holds it locked.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX lead_merges_merged_idx ON lead_merges (merged_lead_id);

-- step: grants from the catalogue: who reads the events, who manages the webhooks
DO $$
DECLARE
    crm regclass[] := ARRAY['leads', 'clients', 'contacts']::regclass[];
    p text;
BEGIN
    IF NOT aicrm_row_security(crm) THEN
        PERFORM aicrm_grant_readers('crm_events', crm);
    END IF;
    FOREACH p IN ARRAY ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] LOOP
        PERFORM aicrm_grant_readers('webhook_subscriptions', ARRAY['api_keys']::regclass[], p, 'DELETE');
        PERFORM aicrm_grant_readers('webhook_deliveries', ARRAY['api_keys']::regclass[], p, 'DELETE');
    END LOOP;
    PERFORM aicrm_grant_readers('crm_events', ARRAY['api_keys']::regclass[], 'SELECT', 'DELETE');
END $$;
