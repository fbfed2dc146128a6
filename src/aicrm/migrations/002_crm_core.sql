-- Migration 002: the CRM core on top of 001's one-way conversion.
--   * known lead statuses; 'converted' is set by conversion only and is final;
--   * a converted lead is read-only (but its ai_* columns) and cannot be deleted;
--   * temporal tracking: every insert, update and delete of leads, clients and
--     contacts is recorded in crm_history by statement-level triggers;
--   * indexes for duplicate checks (lower(email)), text search, JSONB attribute
--     filters and cursor pagination; a table that records merges.
-- aicrm:lock leads, clients, contacts

-- step: quiet enabled user triggers on leads for the status backfill
-- (an updated_at trigger must not restamp converted leads; each trigger gets its
-- exact previous mode back in the step after the backfill)
CREATE TEMP TABLE aicrm_002_quieted ON COMMIT DROP AS
SELECT c.relname AS table_name, t.tgname AS trigger_name, t.tgenabled AS mode
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = 'leads'
  AND NOT t.tgisinternal AND t.tgenabled <> 'D';
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM aicrm_002_quieted LOOP
        EXECUTE format('ALTER TABLE %I DISABLE TRIGGER %I', r.table_name, r.trigger_name);
    END LOOP;
END $$;

-- step: converted leads get the status 'converted' (the old ones are kept for downgrade)
CREATE TABLE migration_002_status_backfill (
    lead_id uuid PRIMARY KEY,
    old_status text
);
INSERT INTO migration_002_status_backfill (lead_id, old_status)
SELECT id, status FROM leads WHERE is_converted AND status IS DISTINCT FROM 'converted';
UPDATE leads l SET status = 'converted'
FROM migration_002_status_backfill b WHERE l.id = b.lead_id;

-- step: give the user triggers back their modes
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM aicrm_002_quieted LOOP
        EXECUTE format(
            'ALTER TABLE %I ENABLE %s TRIGGER %I',
            r.table_name,
            CASE r.mode WHEN 'A' THEN 'ALWAYS' WHEN 'R' THEN 'REPLICA' ELSE '' END,
            r.trigger_name
        );
    END LOOP;
END $$;

-- step: statuses
ALTER TABLE leads
    ADD CONSTRAINT leads_status_known
        CHECK (status IN ('new', 'contacted', 'qualified', 'unqualified', 'lost', 'converted')),
    ADD CONSTRAINT leads_status_converted_iff_converted
        CHECK ((status = 'converted') = is_converted);

-- step: converted leads are read-only but for their ai_* columns
CREATE FUNCTION aicrm_guard_converted_lead() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.is_converted THEN
            RAISE EXCEPTION 'lead % is converted; a converted lead cannot be deleted', OLD.id
                USING ERRCODE = 'AC001', HINT = 'Conversion is permanent.';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.is_converted AND (
        SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb(NEW))
        WHERE key NOT LIKE 'ai\_%' AND key <> 'updated_at'
    ) IS DISTINCT FROM (
        SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb(OLD))
        WHERE key NOT LIKE 'ai\_%' AND key <> 'updated_at'
    ) THEN
        RAISE EXCEPTION 'lead % is converted and read-only (only its ai_* columns can change)', OLD.id
            USING ERRCODE = 'AC001', HINT = 'Conversion is permanent; there is no un-convert.';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER aicrm_guard_converted_lead
    BEFORE UPDATE OR DELETE ON leads
    FOR EACH ROW EXECUTE FUNCTION aicrm_guard_converted_lead();

-- step: the history table
CREATE TABLE crm_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL CHECK (table_name IN ('leads', 'clients', 'contacts')),
    row_id uuid NOT NULL,
    operation text NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
    changed_at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    -- insert and delete: the row's values; update: {column: [old, new]} for the
    -- columns that changed. ai_* columns and updated_at are left out unless the
    -- setting aicrm.history_ai is 'on' (they are rewritten often by annotators).
    changes jsonb NOT NULL
);
CREATE INDEX crm_history_row_idx ON crm_history (table_name, row_id, changed_at, id);
CREATE INDEX crm_history_changed_at_idx ON crm_history (changed_at);

CREATE FUNCTION aicrm_actor() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('aicrm.actor', true), ''), session_user::text)
$$;

CREATE FUNCTION aicrm_history_tracked(key text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT key <> 'updated_at'
       AND (key NOT LIKE 'ai\_%' OR coalesce(current_setting('aicrm.history_ai', true), '') = 'on')
$$;

-- Statement-level triggers with transition tables: one INSERT … SELECT per
-- statement, so bulk conversions and imports are recorded set-based. The actor
-- and the columns left out are worked out once per statement, and each row is
-- turned into JSON once.
CREATE FUNCTION aicrm_history_hidden(relation oid) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(a.attname::text), '{}') FROM pg_attribute a
    WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped
      AND NOT aicrm_history_tracked(a.attname::text)
$$;

CREATE FUNCTION aicrm_history_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    who text := aicrm_actor();
    hidden text[] := aicrm_history_hidden(TG_RELID);
BEGIN
    INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
    SELECT TG_TABLE_NAME, n.id, 'insert', who, to_jsonb(n) - hidden FROM new_rows n;
    RETURN NULL;
END $$;

CREATE FUNCTION aicrm_history_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    who text := aicrm_actor();
    hidden text[] := aicrm_history_hidden(TG_RELID);
BEGIN
    INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
    SELECT TG_TABLE_NAME, o.id, 'delete', who, to_jsonb(o) - hidden FROM old_rows o;
    RETURN NULL;
END $$;

CREATE FUNCTION aicrm_history_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    who text := aicrm_actor();
    hidden text[] := aicrm_history_hidden(TG_RELID);
BEGIN
    WITH j AS MATERIALIZED (  -- each row's old and new values as JSON, once
        SELECT n.id, to_jsonb(o) - hidden AS old, to_jsonb(n) - hidden AS new
        FROM new_rows n JOIN old_rows o ON o.id = n.id
    ), d AS (
        SELECT j.id, (
            SELECT jsonb_object_agg(nv.key, jsonb_build_array(j.old -> nv.key, nv.value))
            FROM jsonb_each(j.new) AS nv
            WHERE (j.old -> nv.key) IS DISTINCT FROM nv.value
        ) AS diff
        FROM j
        WHERE j.old IS DISTINCT FROM j.new  -- e.g. only ai_* changed: nothing to record
    )
    INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
    SELECT TG_TABLE_NAME, d.id, 'update', who, d.diff FROM d WHERE d.diff IS NOT NULL;
    RETURN NULL;
END $$;

-- step: history triggers on leads, clients and contacts
CREATE TRIGGER aicrm_history_insert AFTER INSERT ON leads
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_insert();
CREATE TRIGGER aicrm_history_update AFTER UPDATE ON leads
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_update();
CREATE TRIGGER aicrm_history_delete AFTER DELETE ON leads
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_delete();

CREATE TRIGGER aicrm_history_insert AFTER INSERT ON clients
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_insert();
CREATE TRIGGER aicrm_history_update AFTER UPDATE ON clients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_update();
CREATE TRIGGER aicrm_history_delete AFTER DELETE ON clients
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_delete();

CREATE TRIGGER aicrm_history_insert AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_insert();
CREATE TRIGGER aicrm_history_update AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_update();
CREATE TRIGGER aicrm_history_delete AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION aicrm_history_delete();

-- step: time spent in each status, from the history
-- Leads older than the history start in the status their first recorded change
-- left (or their current one), from their created_at.
CREATE VIEW lead_status_periods AS
WITH recorded AS (
    SELECT h.row_id AS lead_id, h.changed_at, h.id AS seq,
           CASE h.operation WHEN 'insert' THEN h.changes ->> 'status'
                ELSE h.changes -> 'status' ->> 1 END AS status
    FROM crm_history h
    WHERE h.table_name = 'leads'
      AND (h.operation = 'insert' OR (h.operation = 'update' AND h.changes ? 'status'))
), initial AS (
    SELECT l.id AS lead_id, l.created_at AS changed_at, 0::bigint AS seq,
           coalesce((
               SELECT h.changes -> 'status' ->> 0 FROM crm_history h
               WHERE h.table_name = 'leads' AND h.row_id = l.id AND h.operation = 'update'
                 AND h.changes ? 'status'
               ORDER BY h.changed_at, h.id LIMIT 1
           ), l.status) AS status
    FROM leads l
    WHERE NOT EXISTS (
        SELECT 1 FROM crm_history h
        WHERE h.table_name = 'leads' AND h.row_id = l.id AND h.operation = 'insert'
    )
), periods AS (
    SELECT * FROM recorded UNION ALL SELECT * FROM initial
)
SELECT p.lead_id, p.status, p.changed_at AS entered_at,
       lead(p.changed_at) OVER w AS left_at,
       extract(epoch FROM coalesce(lead(p.changed_at) OVER w, now()) - p.changed_at) / 86400.0
           AS days_in_status
FROM periods p
JOIN leads l ON l.id = p.lead_id
WINDOW w AS (PARTITION BY p.lead_id ORDER BY p.changed_at, p.seq);

-- step: merges
CREATE TABLE lead_merges (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kept_lead_id uuid NOT NULL REFERENCES leads (id),
    merged_lead_id uuid NOT NULL,
    merged_at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL DEFAULT aicrm_actor(),
    merged_row jsonb NOT NULL
);
CREATE INDEX lead_merges_kept_idx ON lead_merges (kept_lead_id);

-- step: search and duplicate-check functions
CREATE FUNCTION aicrm_person_document(first_name text, last_name text, email text, company text)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_tsvector('simple'::regconfig,
        coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' '
        || coalesce(company, '') || ' ' || coalesce(email, '') || ' '
        || translate(coalesce(email, ''), '@.', '  '))
$$;

CREATE FUNCTION aicrm_client_document(name text, industry text)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_tsvector('simple'::regconfig, coalesce(name, '') || ' ' || coalesce(industry, ''))
$$;

-- step: indexes on leads
CREATE INDEX leads_email_lower_idx ON leads (lower(email));
CREATE INDEX leads_search_idx ON leads
    USING gin (aicrm_person_document(first_name, last_name, email, company_name));
CREATE INDEX leads_attributes_idx ON leads USING gin (attributes jsonb_path_ops);
CREATE INDEX leads_created_idx ON leads (created_at, id);
CREATE INDEX leads_status_idx ON leads (status);
CREATE INDEX leads_source_idx ON leads (source);

-- step: indexes on clients and contacts
CREATE INDEX clients_search_idx ON clients USING gin (aicrm_client_document(name, industry));
CREATE INDEX clients_attributes_idx ON clients USING gin (attributes jsonb_path_ops);
CREATE INDEX clients_created_idx ON clients (created_at, id);
CREATE INDEX contacts_lead_id_idx ON contacts (lead_id);
CREATE INDEX contacts_client_id_idx ON contacts (client_id);
CREATE INDEX contacts_email_lower_idx ON contacts (lower(email));
CREATE INDEX contacts_search_idx ON contacts
    USING gin (aicrm_person_document(first_name, last_name, email, NULL));
CREATE INDEX contacts_attributes_idx ON contacts USING gin (attributes jsonb_path_ops);
CREATE INDEX contacts_created_idx ON contacts (created_at, id);
