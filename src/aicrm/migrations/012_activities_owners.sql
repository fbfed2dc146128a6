-- Migration 012: owners and activities (docs/activities-and-owners.md).
--   * users: the people (and agents) that own records, hold API keys and sign in to
--     the dashboard; an email is unique ignoring case; users are deactivated, never
--     deleted (records and activities keep pointing at them);
--   * api_keys.user_id: the user a key (and a dashboard sign-in with it) belongs to;
--   * leads.owner_id and clients.owner_id; the history triggers are rebuilt so that
--     an ownership change is recorded like any other column's; a conversion carries
--     the lead's owner to the client (aicrm_convert_lead, redefined here, and a
--     trigger for every other way of converting);
--   * assignment_rules and aicrm_next_owner(source): round-robin among active users
--     (all of them, or a rule's list), per source or for any source;
--   * activities: notes, calls, emails, meetings and tasks attached to exactly one
--     lead, client or contact (CHECK), with an author (the actor, as the history
--     records it) and an assignee; when a lead converts its activities move to the
--     client, and when it is merged away they move to the kept lead, both by
--     triggers with the owner's rights (like 009's merge trigger), in the same
--     transaction as the change;
--   * grants computed from the catalogue, as 009 does: roles that read leads read
--     users, activities and the rules; roles that update leads write activities;
--     roles that insert leads may move the round-robin.
-- aicrm:lock leads, clients, contacts, api_keys, lead_merges

-- step: users
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CONSTRAINT users_name_present CHECK (btrim(name) <> ''),
    email text NOT NULL CONSTRAINT users_email_valid CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- users is created just above, in this transaction: empty, and nobody else sees it yet.
-- squawk-ignore require-concurrent-index-creation
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
COMMENT ON TABLE users IS
    'People and agents that own leads and clients, hold API keys and are assigned '
    'activities (aicrm users add/list/deactivate); deactivated, never deleted.';

-- step: API keys belong to users
ALTER TABLE api_keys ADD COLUMN user_id uuid NULL;
-- users is new and empty and user_id all NULL: the validation reads api_keys once.
ALTER TABLE api_keys ADD CONSTRAINT api_keys_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
ALTER TABLE api_keys VALIDATE CONSTRAINT api_keys_user_id_fkey;

-- step: owners of leads and clients
ALTER TABLE leads ADD COLUMN owner_id uuid NULL;
ALTER TABLE clients ADD COLUMN owner_id uuid NULL;
-- The columns are new and all NULL: each validation is one read of its table, under
-- the locks the migration holds already (aicrm:lock above).
ALTER TABLE leads ADD CONSTRAINT leads_owner_id_fkey
    FOREIGN KEY (owner_id) REFERENCES users (id) NOT VALID;
ALTER TABLE leads VALIDATE CONSTRAINT leads_owner_id_fkey;
ALTER TABLE clients ADD CONSTRAINT clients_owner_id_fkey
    FOREIGN KEY (owner_id) REFERENCES users (id) NOT VALID;
ALTER TABLE clients VALIDATE CONSTRAINT clients_owner_id_fkey;
-- Lists filtered by owner, newest first (keyset pagination on created_at, id). The
-- migration is one transaction holding ACCESS EXCLUSIVE on both tables (aicrm:lock):
-- CONCURRENTLY cannot run inside it, and would wait for the same lock.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX leads_owner_idx ON leads (owner_id, created_at, id) WHERE owner_id IS NOT NULL;
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX clients_owner_idx ON clients (owner_id, created_at, id) WHERE owner_id IS NOT NULL;

-- step: the history records ownership changes (the triggers' column lists rebuilt)
SELECT aicrm_history_refresh('leads');
SELECT aicrm_history_refresh('clients');

-- step: assignment rules and the round-robin
CREATE TABLE assignment_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the leads' source this rule assigns; NULL: any source without a rule of its own
    source text NULL,
    -- the users taking turns; empty: every active user
    user_ids uuid[] NOT NULL DEFAULT '{}',
    -- the round-robin's position: the user assigned last
    last_user_id uuid NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT assignment_rules_source_key UNIQUE NULLS NOT DISTINCT (source)
);
COMMENT ON TABLE assignment_rules IS
    'Round-robin assignment of new leads without an explicit owner (aicrm users rule): '
    'per source, or for any source (source NULL); among user_ids, or every active user.';

-- The owner of a new lead of that source by the rules: the next active user of the
-- rule's turn (the source's own rule, else the rule for any source), or NULL when no
-- rule applies or nobody in it is active. Moves the turn: concurrent callers queue on
-- the rule's row. Runs with the caller's rights (UPDATE on last_user_id is enough).
CREATE FUNCTION aicrm_next_owner(lead_source text) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    rule_id bigint;
    members uuid[];
    last_id uuid;
    last_created timestamptz;
    chosen uuid;
BEGIN
    SELECT r.id, r.user_ids, r.last_user_id INTO rule_id, members, last_id
    FROM assignment_rules r
    WHERE r.source = lead_source OR r.source IS NULL
    ORDER BY r.source IS NULL
    LIMIT 1
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT u.created_at INTO last_created FROM users u WHERE u.id = last_id;
    SELECT u.id INTO chosen FROM users u
    WHERE u.active AND (cardinality(members) = 0 OR u.id = ANY(members))
    ORDER BY (last_created IS NOT NULL AND (u.created_at, u.id) <= (last_created, last_id)),
             u.created_at, u.id
    LIMIT 1;
    IF chosen IS NOT NULL THEN
        UPDATE assignment_rules SET last_user_id = chosen WHERE id = rule_id;
    END IF;
    RETURN chosen;
END $$;

-- step: activities
CREATE TABLE activities (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind text NOT NULL
        CONSTRAINT activities_kind_known
        CHECK (kind IN ('note', 'call', 'email', 'meeting', 'task')),
    subject text NOT NULL CONSTRAINT activities_subject_present CHECK (btrim(subject) <> ''),
    body text NULL,
    due_at timestamptz NULL,
    -- only a task is done or not; the others happened when they were logged
    done_at timestamptz NULL CONSTRAINT activities_done_is_task CHECK (done_at IS NULL OR kind = 'task'),
    assignee_id uuid NULL REFERENCES users (id),
    author text NOT NULL DEFAULT aicrm_actor(),
    lead_id uuid NULL REFERENCES leads (id) ON DELETE CASCADE,
    client_id uuid NULL REFERENCES clients (id) ON DELETE CASCADE,
    contact_id uuid NULL REFERENCES contacts (id) ON DELETE CASCADE,
    attributes jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT activities_attributes_object CHECK (jsonb_typeof(attributes) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT activities_one_record CHECK (num_nonnulls(lead_id, client_id, contact_id) = 1)
);
COMMENT ON TABLE activities IS
    'Notes, calls, emails, meetings and tasks of one lead, client or contact (aicrm '
    'activities); they follow a lead into its client at conversion and into the kept '
    'lead at a merge.';
-- activities is created just above, in this transaction: empty, and nobody else sees
-- it yet, so there is nothing for CONCURRENTLY to spare.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX activities_lead_idx ON activities (lead_id, created_at, id)
    WHERE lead_id IS NOT NULL;
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX activities_client_idx ON activities (client_id, created_at, id)
    WHERE client_id IS NOT NULL;
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX activities_contact_idx ON activities (contact_id, created_at, id)
    WHERE contact_id IS NOT NULL;
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX activities_open_tasks_idx ON activities (assignee_id, due_at, id)
    WHERE kind = 'task' AND done_at IS NULL;

-- step: a conversion moves the lead's activities and carries its owner to the client
-- For every way of converting (aicrm_convert_lead, the bulk conversion, another
-- application's UPDATE): the moment is_converted turns true. Owner's rights with a
-- pinned search_path, like 009's merge trigger: the converting role needs no
-- privilege on activities. The client keeps an owner it has.
CREATE FUNCTION aicrm_conversion_moves_activities() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM activities a WHERE a.lead_id = NEW.id) THEN
        UPDATE activities SET lead_id = NULL, client_id = NEW.converted_to_client_id,
                              updated_at = now()
        WHERE lead_id = NEW.id;
    END IF;
    IF NEW.owner_id IS NOT NULL THEN
        UPDATE clients SET owner_id = NEW.owner_id, updated_at = now()
        WHERE id = NEW.converted_to_client_id AND owner_id IS NULL;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER aicrm_conversion_moves_activities AFTER UPDATE OF is_converted ON leads
    FOR EACH ROW WHEN (NEW.is_converted AND NOT OLD.is_converted)
    EXECUTE FUNCTION aicrm_conversion_moves_activities();

-- step: a merge moves the merged lead's activities too (009's trigger function)
CREATE OR REPLACE FUNCTION aicrm_merge_moves_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF NEW.kept_lead_id = NEW.merged_lead_id OR NOT EXISTS (
        SELECT 1 FROM leads l WHERE l.id = NEW.merged_lead_id AND NOT l.is_converted
    ) THEN
        RAISE EXCEPTION 'a merge records an open lead, other than the kept one, that it deletes'
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE crm_history SET row_id = NEW.kept_lead_id
    WHERE table_name = 'leads' AND row_id = NEW.merged_lead_id;
    UPDATE activities SET lead_id = NEW.kept_lead_id, updated_at = now()
    WHERE lead_id = NEW.merged_lead_id;
    RETURN NEW;
END $$;
DO $$  -- pinned like 009's functions (the schema's name is known only here)
DECLARE
    path text := format('pg_catalog, %I, pg_temp', current_schema());
BEGIN
    EXECUTE format('ALTER FUNCTION aicrm_merge_moves_history() SET search_path = %s', path);
    EXECUTE format('ALTER FUNCTION aicrm_conversion_moves_activities() SET search_path = %s',
                   path);
END $$;
REVOKE EXECUTE ON FUNCTION aicrm_conversion_moves_activities() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION aicrm_merge_moves_history() FROM PUBLIC;

-- step: grants from the catalogue: what each role could read or do before
DO $$
DECLARE
    r record;
BEGIN
    PERFORM aicrm_grant_readers('users', ARRAY['leads']::regclass[]);
    PERFORM aicrm_grant_readers('assignment_rules', ARRAY['leads']::regclass[]);
    PERFORM aicrm_grant_readers('activities', ARRAY['leads', 'clients', 'contacts']::regclass[]);
    PERFORM aicrm_grant_readers('activities', ARRAY['leads']::regclass[], 'INSERT', 'UPDATE');
    PERFORM aicrm_grant_readers('activities', ARRAY['leads']::regclass[], 'UPDATE', 'UPDATE');
    PERFORM aicrm_grant_readers('activities', ARRAY['leads']::regclass[], 'DELETE', 'UPDATE');
    -- the round-robin's turn, for roles that create leads (a column privilege)
    FOR r IN
        SELECT a.rolname FROM pg_roles a
        WHERE NOT a.rolsuper AND a.rolname !~ '^pg_' AND a.rolname <> current_user
          AND has_table_privilege(a.oid, 'leads', 'INSERT')
          AND NOT has_column_privilege(a.oid, 'assignment_rules', 'last_user_id', 'UPDATE')
        ORDER BY a.rolname
    LOOP
        EXECUTE format('GRANT UPDATE (last_user_id) ON assignment_rules TO %I', r.rolname);
    END LOOP;
END $$;
