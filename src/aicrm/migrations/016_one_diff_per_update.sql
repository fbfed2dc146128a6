-- Migration 016: a change is turned into JSON once, for its history and its event
-- (docs/events-and-webhooks.md, "Speed"; issue #17's speed target).
--   013's event triggers worked beside the history's (002, 007) on every insert, update
--   and delete of leads, clients and contacts: for an updated row they turned the old
--   and the new row into JSON and compared them key by key, right after the history's
--   trigger had compared the same two rows column by column; every statement that wrote
--   events then fired the wake-up trigger on crm_events. Two or three trigger calls, two
--   conversions to JSON and two calls of aicrm_actor() per change: most of what the
--   outbox cost a conversion.
--   * the history trigger functions of leads, clients and contacts now write the
--     change's event too: aicrm_history_update_row() (generated, 007 and 009) from the
--     changes it computed for the history, less the ai_* columns (which the history
--     has only while aicrm.history_ai is on); aicrm_history_insert() and
--     aicrm_history_delete() from the same JSON of each row. The events are 013's
--     (types, record, changes, client_id of a conversion, actor, no lead.deleted for a
--     merged lead), in the same transaction, from the same triggers.
--   * leads, clients and contacts lose their aicrm_events_* triggers; activities, which
--     have no history, keep theirs. aicrm_events_refresh(table, kind) creates them only
--     for a table without the history triggers.
--   * the wake-up of a sleeping delivery worker (014) is asked once per transaction, by
--     the first function that writes an event (aicrm_events_wake(); a transaction-local
--     setting, aicrm.events_woken, remembers it), not by a trigger on crm_events after
--     every statement. A transaction that began before a lane fell asleep is delivered
--     at most --poll seconds late, as 014 says of long transactions.
--   * new events get time-ordered ids (UUID version 7: the first 48 bits are the
--     millisecond), so that the unique index on event_id grows at its right edge like
--     the primary key: a random UUID (013's gen_random_uuid()) sends every insert to a
--     random leaf page, a page read once the index outgrows memory and a full-page
--     image in the WAL at its first change after each checkpoint. Existing events keep
--     their ids; ids stay opaque to receivers.
--   * crm_events_record_idx (record_id, id) is dropped: no query reads it (the worker's
--     order per record uses webhook_deliveries_record_idx), and it cost every event a
--     random-leaf insert of the same kind.
-- The functions stay SECURITY DEFINER with a pinned search_path (009, 013): they write
-- crm_events with their owner's rights.
-- aicrm:lock leads, clients, contacts, activities, lead_merges, crm_events

-- step: the wake-up, once per transaction; the record kind of a table's events
-- Sets aicrm.events_woken for the rest of the transaction (set_config's is_local; the
-- SET clause of a calling function concerns search_path only, so it outlives the
-- call). A session that sets it itself only delays its own deliveries to the worker's
-- next poll: the events are written all the same.
CREATE FUNCTION aicrm_events_wake() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM set_config('aicrm.events_woken', 'on', true);
    IF EXISTS (SELECT 1 FROM webhook_sleepers)
       AND EXISTS (SELECT 1 FROM webhook_subscriptions WHERE active) THEN
        PERFORM pg_notify('aicrm_events', '');
    END IF;
END $$;
-- The record kind of a table's events, for the tables whose history writes them.
CREATE FUNCTION aicrm_events_kind(table_name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE table_name WHEN 'leads' THEN 'lead' WHEN 'clients' THEN 'client'
                           WHEN 'contacts' THEN 'contact' END
$$;
DROP TRIGGER aicrm_events_fanout ON crm_events;
DROP FUNCTION aicrm_events_fanout();

-- step: time-ordered event ids; the unused index on record_id goes
-- A UUID of version 7 (RFC 9562) from gen_random_uuid(): its first six bytes replaced by
-- the Unix time in milliseconds, its version nibble set to 7 (bits 52 and 53 on top of
-- version 4's bit 54). PostgreSQL 18's uuidv7() does the same; 15 to 17 lack it.
CREATE FUNCTION aicrm_uuid7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                          FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;
ALTER TABLE crm_events ALTER COLUMN event_id SET DEFAULT aicrm_uuid7();
-- crm_events is locked by this migration (its header): writers wait either way, and
-- dropping an index only removes its catalogue entry and files.
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX crm_events_record_idx;

-- step: the generator of the update-history function writes events too
CREATE OR REPLACE FUNCTION aicrm_history_update_row_rebuild() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    branches text := '';
    relation regclass;
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['leads', 'clients', 'contacts'] LOOP
        relation := to_regclass(quote_ident(current_schema()) || '.' || quote_ident(name));
        CONTINUE WHEN relation IS NULL;
        branches := branches || format(
            E'    %s TG_TABLE_NAME = %L THEN\n        changes := %s;\n'
            || E'        kind := %L;\n        hidden := %L;\n%s',
            CASE WHEN branches = '' THEN 'IF' ELSE 'ELSIF' END, name,
            aicrm_history_changes_sql(relation), aicrm_events_kind(name),
            aicrm_history_untracked(relation),
            CASE WHEN name = 'leads'
                 THEN E'        converted := NEW.is_converted AND NOT OLD.is_converted;\n'
                 ELSE '' END);
    END LOOP;
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION aicrm_history_update_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %I, pg_temp AS $body$
-- Generated by aicrm_history_update_row_rebuild() (migrations 007, 009, 016): rebuilt by
-- aicrm_history_refresh(table); do not edit.
DECLARE
    ai boolean := coalesce(current_setting('aicrm.history_ai', true), '') = 'on';
    changes jsonb;
    old_row jsonb;
    new_row jsonb;
    kind text;
    hidden text[] := '{}';
    converted boolean := false;
    who text;
BEGIN
%s    %s
        old_row := to_jsonb(OLD);
        SELECT jsonb_object_agg(n.key, jsonb_build_array(old_row -> n.key, n.value))
        INTO changes
        FROM jsonb_each(to_jsonb(NEW)) AS n
        WHERE (old_row -> n.key) IS DISTINCT FROM n.value AND aicrm_history_tracked(n.key);
    END IF;
    IF changes IS NULL OR changes = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    who := aicrm_actor();
    INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
    VALUES (TG_TABLE_NAME, NEW.id, 'update', who, changes);
    -- The update's event (013's, written here since 016): the same changes, never ai_*.
    IF ai THEN
        changes := changes - hidden;
    END IF;
    IF kind IS NULL OR changes = '{}'::jsonb THEN
        RETURN NULL;
    END IF;
    new_row := to_jsonb(NEW);
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    VALUES (kind || CASE WHEN converted THEN '.converted' ELSE '.updated' END, kind, NEW.id,
            jsonb_build_object('record', new_row, 'changes', changes)
                || CASE WHEN converted
                        THEN jsonb_build_object('client_id', new_row -> 'converted_to_client_id')
                        ELSE '{}' END,
            who);
    IF current_setting('aicrm.events_woken', true) IS DISTINCT FROM 'on' THEN
        PERFORM aicrm_events_wake();
    END IF;
    RETURN NULL;
END
$body$
$f$, current_schema(), branches, CASE WHEN branches = '' THEN 'IF true THEN' ELSE 'ELSE' END);
END $$;
SELECT aicrm_history_update_row_rebuild();

-- step: insert and delete history write the events too
-- 007's functions (the columns to leave out come as the trigger's arguments), and 013's
-- events from the same JSON of each row. kind: the record kind of the table's events.
CREATE OR REPLACE FUNCTION aicrm_history_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    who text := aicrm_actor();
    hidden text[] := CASE
        WHEN TG_NARGS = 0 THEN aicrm_history_hidden(TG_RELID)
        WHEN coalesce(current_setting('aicrm.history_ai', true), '') = 'on'
            THEN ARRAY(SELECT h FROM unnest(TG_ARGV) AS h WHERE h NOT LIKE 'ai\_%')
        ELSE TG_ARGV END;
    kind text := aicrm_events_kind(TG_TABLE_NAME);
BEGIN
    WITH r AS MATERIALIZED (SELECT n.id, to_jsonb(n) AS j FROM new_rows n),
    history AS (
        INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
        SELECT TG_TABLE_NAME, r.id, 'insert', who, r.j - hidden FROM r
    )
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    SELECT kind || '.created', kind, r.id, jsonb_build_object('record', r.j), who
    FROM r WHERE kind IS NOT NULL;
    IF FOUND AND current_setting('aicrm.events_woken', true) IS DISTINCT FROM 'on' THEN
        PERFORM aicrm_events_wake();
    END IF;
    RETURN NULL;
END $$;

-- A lead deleted by a merge (recorded in lead_merges by this transaction, before the
-- DELETE) has announced lead.merged instead (013).
CREATE OR REPLACE FUNCTION aicrm_history_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    who text := aicrm_actor();
    hidden text[] := CASE
        WHEN TG_NARGS = 0 THEN aicrm_history_hidden(TG_RELID)
        WHEN coalesce(current_setting('aicrm.history_ai', true), '') = 'on'
            THEN ARRAY(SELECT h FROM unnest(TG_ARGV) AS h WHERE h NOT LIKE 'ai\_%')
        ELSE TG_ARGV END;
    kind text := aicrm_events_kind(TG_TABLE_NAME);
BEGIN
    WITH r AS MATERIALIZED (SELECT o.id, to_jsonb(o) AS j FROM old_rows o),
    history AS (
        INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
        SELECT TG_TABLE_NAME, r.id, 'delete', who, r.j - hidden FROM r
    )
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    SELECT kind || '.deleted', kind, r.id, jsonb_build_object('record', r.j), who
    FROM r
    WHERE kind IS NOT NULL
      AND (kind <> 'lead'
           OR NOT EXISTS (SELECT 1 FROM lead_merges m WHERE m.merged_lead_id = r.id));
    IF FOUND AND current_setting('aicrm.events_woken', true) IS DISTINCT FROM 'on' THEN
        PERFORM aicrm_events_wake();
    END IF;
    RETURN NULL;
END $$;


-- step: 013's event functions (activities, merges) wake the worker themselves
CREATE OR REPLACE FUNCTION aicrm_events_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    SELECT TG_ARGV[0] || '.created', TG_ARGV[0], n.id, jsonb_build_object('record', to_jsonb(n)),
           aicrm_actor()
    FROM new_rows n;
    IF FOUND AND current_setting('aicrm.events_woken', true) IS DISTINCT FROM 'on' THEN
        PERFORM aicrm_events_wake();
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION aicrm_events_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    SELECT TG_ARGV[0] || '.deleted', TG_ARGV[0], o.id, jsonb_build_object('record', to_jsonb(o)),
           aicrm_actor()
    FROM old_rows o
    WHERE TG_ARGV[0] <> 'lead'
       OR NOT EXISTS (SELECT 1 FROM lead_merges m WHERE m.merged_lead_id = o.id);
    IF FOUND AND current_setting('aicrm.events_woken', true) IS DISTINCT FROM 'on' THEN
        PERFORM aicrm_events_wake();
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION aicrm_events_update() RETURNS trigger
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
    IF current_setting('aicrm.events_woken', true) IS DISTINCT FROM 'on' THEN
        PERFORM aicrm_events_wake();
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION aicrm_events_merge() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO crm_events (type, record_kind, record_id, payload, actor)
    VALUES ('lead.merged', 'lead', NEW.merged_lead_id,
            jsonb_build_object('record', NEW.merged_row, 'kept_lead_id', NEW.kept_lead_id,
                               'merged_lead_id', NEW.merged_lead_id),
            NEW.actor);
    IF current_setting('aicrm.events_woken', true) IS DISTINCT FROM 'on' THEN
        PERFORM aicrm_events_wake();
    END IF;
    RETURN NULL;
END $$;

DO $$  -- CREATE OR REPLACE dropped the pinned search_paths: pinned again (009, 013)
DECLARE
    f text;
    path text := format('pg_catalog, %I, pg_temp', current_schema());
BEGIN
    FOREACH f IN ARRAY ARRAY['aicrm_history_insert()', 'aicrm_history_delete()',
                             'aicrm_events_insert()', 'aicrm_events_delete()',
                             'aicrm_events_update()', 'aicrm_events_merge()',
                             'aicrm_events_wake()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %s', f, path);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- step: event triggers only on tables without the history triggers
CREATE OR REPLACE FUNCTION aicrm_events_refresh(relation regclass, kind text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    -- 016: the history's triggers write the events of leads, clients and contacts
    by_history boolean := EXISTS (
        SELECT 1 FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
        WHERE g.tgrelid = relation AND g.tgname = 'aicrm_history_update'
          AND p.proname = 'aicrm_history_update_row');
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS aicrm_events_insert ON %s', relation);
    EXECUTE format('DROP TRIGGER IF EXISTS aicrm_events_delete ON %s', relation);
    EXECUTE format('DROP TRIGGER IF EXISTS aicrm_events_update ON %s', relation);
    IF by_history THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE TRIGGER aicrm_events_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS '
        'new_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_events_insert(%L)', relation, kind);
    EXECUTE format(
        'CREATE TRIGGER aicrm_events_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS '
        'old_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_events_delete(%L)', relation, kind);
    EXECUTE format(
        'CREATE TRIGGER aicrm_events_update AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) '
        'EXECUTE FUNCTION aicrm_events_update(%L)',
        relation, coalesce(aicrm_history_compare(relation, false), 'false'), kind);
END $$;
REVOKE EXECUTE ON FUNCTION aicrm_events_refresh(regclass, text) FROM PUBLIC;

-- step: leads, clients and contacts announce their changes from the history triggers
SELECT aicrm_events_refresh('leads', 'lead');
SELECT aicrm_events_refresh('clients', 'client');
SELECT aicrm_events_refresh('contacts', 'contact');
