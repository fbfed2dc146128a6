-- The online form of migration 001 (aicrm db migrate --online): the same change as
-- ../001_resolve_circular_fk.sql, in phases of short transactions while the CRM keeps
-- working. Format: aicrm.migrate.loader's docstring and docs/migration-engine.md;
-- design: docs/online-migration.md.

-- phase: expand
-- Online migration 001, phase "expand" (docs/online-migration.md).
--
-- Only instant DDL and new objects: 001's archive tables, the three conversion
-- columns (NULL columns and a constant default: no table rewrite), two indexes built
-- CONCURRENTLY, and the functions and triggers that apply 001's rules
-- (docs/migration-001.md) to every row the application writes from now on. The
-- backfill calls the same functions for the rows written before.
--
-- Every step is idempotent and runs in its own short transaction under a short
-- lock_timeout, retried with backoff; a step whose SQL holds CREATE INDEX
-- CONCURRENTLY runs outside a transaction, after dropping an invalid index of the
-- same name left by an interrupted run. A run killed anywhere re-runs this file.
--
-- Concurrency: every function locks the rows it recomputes (FOR NO KEY UPDATE, in
-- id order) in one statement and reads what it needs in the next ones, so under
-- READ COMMITTED it sees every change committed before it got the lock, and a
-- writer that comes later waits for it and recomputes after it.

-- step: 001's archive and bookkeeping tables (new tables: no lock on the CRM's)
CREATE TABLE IF NOT EXISTS migration_001_link_archive (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL,
    row_id uuid NOT NULL,
    column_name text NOT NULL,
    referenced_id uuid NOT NULL,
    reason text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (table_name, column_name, row_id)
);
COMMENT ON TABLE migration_001_link_archive IS
    'Migration 001: every legacy reference (table, row, column, referenced id) that the '
    'new structure cannot express, with the reason (it starts with the name of the '
    'integrity check that reports it). Read by the downgrade to 000.';

CREATE TABLE IF NOT EXISTS migration_001_orphan_contacts (LIKE contacts);
-- 001's own table, created empty just above: a NOT NULL column is no burden on it.
-- squawk-ignore adding-required-field
ALTER TABLE migration_001_orphan_contacts ADD COLUMN IF NOT EXISTS reason text NOT NULL;
COMMENT ON TABLE migration_001_orphan_contacts IS
    'Migration 001: contacts that had no existing parent, moved whole (their cleared '
    'orphan references are in migration_001_link_archive). The downgrade puts them back.';

CREATE TABLE IF NOT EXISTS migration_001_legacy_values (
    table_name text NOT NULL,
    column_name text NOT NULL,
    row_id uuid NOT NULL,
    legacy_value uuid NULL,
    reason text NOT NULL,
    PRIMARY KEY (table_name, column_name, row_id)
);
COMMENT ON TABLE migration_001_legacy_values IS
    'Migration 001: for an exact downgrade, legacy values of leads.client_id, '
    'clients.converted_from_lead_id and contacts.lead_id that the new columns imply '
    'differently (one-sided conversions, a client converted from several leads, a '
    'contact''s lead link implied by the conversion). Not lost references: those are '
    'in migration_001_link_archive.';

CREATE TABLE IF NOT EXISTS migration_001_legacy_objects (
    table_name text NOT NULL,
    column_name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('column', 'constraint', 'index')),
    name text NOT NULL,
    definition text NOT NULL,
    PRIMARY KEY (table_name, kind, name)
);
COMMENT ON TABLE migration_001_legacy_objects IS
    'Migration 001: type of leads.client_id and clients.converted_from_lead_id, and the '
    'constraints (the circular foreign keys among them) and indexes on them, as they '
    'were, for the downgrade to 000.';

-- The online run's own lookups of contacts' cleared lead links by lead (dropped by
-- the switch): a lead whose conversion changes reclassifies them.
-- Plain CREATE INDEX: these are 001's own new tables, which no application query uses.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX IF NOT EXISTS migration_001_online_archive_lead_idx
    ON migration_001_link_archive (referenced_id) WHERE table_name = 'contacts';
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX IF NOT EXISTS migration_001_online_values_lead_idx
    ON migration_001_legacy_values (legacy_value) WHERE table_name = 'contacts';

-- step: add the conversion fields (instant: NULL columns and a constant default)
ALTER TABLE leads
    ADD COLUMN IF NOT EXISTS converted_to_client_id uuid NULL,
    ADD COLUMN IF NOT EXISTS conversion_date timestamptz NULL,
    ADD COLUMN IF NOT EXISTS is_converted boolean NOT NULL DEFAULT false;

-- step: index the claims on leads (CONCURRENTLY; dropped with the legacy column)
-- aicrm:autocommit
CREATE INDEX CONCURRENTLY IF NOT EXISTS migration_001_claims_idx
    ON clients (converted_from_lead_id) WHERE converted_from_lead_id IS NOT NULL;

-- step: index the new key's column before the backfill (CONCURRENTLY; 001's own index)
-- aicrm:autocommit
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_converted_to_client_id_idx ON leads (converted_to_client_id)
    WHERE converted_to_client_id IS NOT NULL;

-- step: the functions that apply 001's rules to given rows
-- 001's resolution of the given leads, from the legacy columns: the client they
-- converted to (the earliest claim, then client_id), as in 001's work table.
CREATE OR REPLACE FUNCTION migration_001_resolve(ids uuid[])
RETURNS TABLE (lead_id uuid, client_id uuid, conversion_date timestamptz, claimed boolean,
               legacy_client_id uuid, legacy_client_found uuid)
LANGUAGE sql STABLE AS $$
    SELECT l.id,
           coalesce(w.id, lc.id),
           CASE WHEN coalesce(w.id, lc.id) IS NOT NULL
                THEN greatest(coalesce(w.created_at, lc.created_at), l.created_at) END,
           w.id IS NOT NULL,
           l.client_id,
           lc.id
    FROM leads AS l
    LEFT JOIN LATERAL (
        SELECT c.id, c.created_at FROM clients AS c
        WHERE c.converted_from_lead_id = l.id
        ORDER BY c.created_at, c.id
        LIMIT 1
    ) AS w ON true
    LEFT JOIN clients AS lc ON lc.id = l.client_id
    WHERE l.id = ANY (ids)
$$;

-- The legacy values of the given clients (one-sided or several-lead conversions),
-- from the leads' conversion fields; with backfill, their orphaned claims too.
CREATE OR REPLACE FUNCTION migration_001_sync_clients(ids uuid[], backfill boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    orphans integer;
BEGIN
    ids := ARRAY(SELECT DISTINCT x FROM unnest(ids) AS x WHERE x IS NOT NULL ORDER BY 1);
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM clients WHERE id = ANY (ids) ORDER BY id FOR NO KEY UPDATE;
    IF backfill THEN
        INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
        SELECT 'clients', c.id, 'converted_from_lead_id', c.converted_from_lead_id,
               'orphan_client_converted_from_lead_id: orphan reference, names no existing lead; cleared'
        FROM clients AS c
        WHERE c.id = ANY (ids) AND c.converted_from_lead_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM leads AS l WHERE l.id = c.converted_from_lead_id)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS orphans = ROW_COUNT;
        IF orphans > 0 AND coalesce(current_setting('aicrm.archive_orphans', true), '') <> 'on' THEN
            RAISE EXCEPTION 'orphaned references found (clients.converted_from_lead_id: %); rerun with --archive-orphans to archive and clear them', orphans;
        END IF;
    END IF;
    DELETE FROM migration_001_legacy_values
    WHERE table_name = 'clients' AND column_name = 'converted_from_lead_id' AND row_id = ANY (ids);
    INSERT INTO migration_001_legacy_values (table_name, column_name, row_id, legacy_value, reason)
    SELECT 'clients', 'converted_from_lead_id', c.id, c.converted_from_lead_id,
           CASE WHEN c.converted_from_lead_id IS NULL
                THEN 'client_converted_only_on_lead_side: its lead''s client_id names it, its '
                     'converted_from_lead_id was empty'
                ELSE 'client_converted_from_several_leads: the lead its converted_from_lead_id '
                     'named, among several leads converted to it'
           END
    FROM clients AS c
    CROSS JOIN LATERAL (SELECT count(*) AS leads FROM leads AS l
                        WHERE l.converted_to_client_id = c.id) AS n
    LEFT JOIN leads AS own ON own.id = c.converted_from_lead_id
                          AND own.converted_to_client_id = c.id
    WHERE c.id = ANY (ids)
      AND ((n.leads = 1 AND c.converted_from_lead_id IS NULL)
        OR (n.leads > 1 AND own.id IS NOT NULL));
END
$$;

-- The conversion fields of the given leads and the archive rows and legacy values
-- keyed by them or by their claims; then (but in the backfill, whose clients pass
-- comes after) the legacy values of every client concerned, old and new.
CREATE OR REPLACE FUNCTION migration_001_sync_leads(ids uuid[], backfill boolean DEFAULT false,
                                                    also_clients uuid[] DEFAULT '{}')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    orphans integer;
    concerned uuid[];
    link record;
BEGIN
    ids := ARRAY(SELECT DISTINCT x FROM unnest(ids) AS x WHERE x IS NOT NULL ORDER BY 1);
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM leads WHERE id = ANY (ids) ORDER BY id FOR NO KEY UPDATE;
    IF backfill THEN
        INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
        SELECT 'leads', l.id, 'client_id', l.client_id,
               'orphan_lead_client_id: orphan reference, names no existing client; cleared'
        FROM leads AS l
        WHERE l.id = ANY (ids) AND l.client_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM clients AS c WHERE c.id = l.client_id)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS orphans = ROW_COUNT;
        IF orphans > 0 AND coalesce(current_setting('aicrm.archive_orphans', true), '') <> 'on' THEN
            RAISE EXCEPTION 'orphaned references found (leads.client_id: %); rerun with --archive-orphans to archive and clear them', orphans;
        END IF;
    ELSE
        concerned := also_clients
            || ARRAY(SELECT converted_to_client_id FROM leads WHERE id = ANY (ids))
            || ARRAY(SELECT id FROM clients WHERE converted_from_lead_id = ANY (ids));
    END IF;

    UPDATE leads AS l
    SET converted_to_client_id = r.client_id,
        conversion_date = r.conversion_date,
        is_converted = r.client_id IS NOT NULL
    FROM migration_001_resolve(ids) AS r
    WHERE l.id = r.lead_id
      AND (l.converted_to_client_id, l.conversion_date, l.is_converted)
          IS DISTINCT FROM (r.client_id, r.conversion_date, r.client_id IS NOT NULL);

    DELETE FROM migration_001_link_archive
    WHERE table_name = 'leads' AND column_name = 'client_id' AND row_id = ANY (ids)
      AND reason LIKE 'lead\_client\_id\_disagrees:%';
    INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
    SELECT 'leads', r.lead_id, 'client_id', r.legacy_client_found,
           'lead_client_id_disagrees: names another client than the one whose '
           'converted_from_lead_id names the lead; that client keeps the conversion'
    FROM migration_001_resolve(ids) AS r
    WHERE r.claimed AND r.legacy_client_found <> r.client_id
    ON CONFLICT DO NOTHING;

    DELETE FROM migration_001_link_archive AS a
    USING clients AS c
    WHERE a.table_name = 'clients' AND a.column_name = 'converted_from_lead_id'
      AND a.row_id = c.id AND c.converted_from_lead_id = ANY (ids)
      AND a.reason LIKE 'lead\_claimed\_by\_several\_clients:%';
    INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
    SELECT 'clients', c.id, 'converted_from_lead_id', c.converted_from_lead_id,
           'lead_claimed_by_several_clients: an earlier client (created_at, then id) also '
           'names this lead and keeps the conversion'
    FROM clients AS c
    JOIN migration_001_resolve(ids) AS r ON r.lead_id = c.converted_from_lead_id
    WHERE r.client_id <> c.id
    ON CONFLICT DO NOTHING;

    DELETE FROM migration_001_legacy_values
    WHERE table_name = 'leads' AND column_name = 'client_id' AND row_id = ANY (ids);
    INSERT INTO migration_001_legacy_values (table_name, column_name, row_id, legacy_value, reason)
    SELECT 'leads', 'client_id', r.lead_id, NULL,
           'lead_converted_only_on_client_side: a client names the lead, its client_id was empty'
    FROM migration_001_resolve(ids) AS r
    WHERE r.claimed AND r.legacy_client_id IS NULL;

    IF NOT backfill THEN
        -- Contacts whose link to these leads 001's rule cleared (both parents): the
        -- link is archived, or implied when the lead converted to the contact's
        -- client. The leads' conversion may have changed: classify them again.
        FOR link IN
            SELECT x.contact_id, x.lead_id, x.archived
            FROM (SELECT a.row_id AS contact_id, a.referenced_id AS lead_id, true AS archived
                  FROM migration_001_link_archive AS a
                  WHERE a.table_name = 'contacts' AND a.column_name = 'lead_id'
                    AND a.referenced_id = ANY (ids)
                    AND a.reason LIKE 'contact\_lead\_link\_archived:%'
                  UNION ALL
                  SELECT v.row_id, v.legacy_value, false
                  FROM migration_001_legacy_values AS v
                  WHERE v.table_name = 'contacts' AND v.column_name = 'lead_id'
                    AND v.legacy_value = ANY (ids)
                    AND v.reason LIKE 'contact\_lead\_implied\_by\_conversion:%') AS x
            JOIN contacts AS k ON k.id = x.contact_id
            JOIN leads AS l ON l.id = x.lead_id
            WHERE (l.converted_to_client_id IS DISTINCT FROM k.client_id) <> x.archived
        LOOP
            DELETE FROM migration_001_link_archive
            WHERE table_name = 'contacts' AND column_name = 'lead_id' AND row_id = link.contact_id;
            DELETE FROM migration_001_legacy_values
            WHERE table_name = 'contacts' AND column_name = 'lead_id' AND row_id = link.contact_id;
            IF link.archived THEN
                INSERT INTO migration_001_legacy_values (table_name, column_name, row_id, legacy_value, reason)
                VALUES ('contacts', 'lead_id', link.contact_id, link.lead_id,
                        'contact_lead_implied_by_conversion: the contact also had client_id, which it '
                        'keeps, and this lead converted to that client');
            ELSE
                INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
                VALUES ('contacts', link.contact_id, 'lead_id', link.lead_id,
                        'contact_lead_link_archived: the contact also had client_id, which it keeps, '
                        'and this lead did not convert to that client');
            END IF;
        END LOOP;
        PERFORM migration_001_sync_clients(
            concerned || ARRAY(SELECT converted_to_client_id FROM leads WHERE id = ANY (ids)));
    END IF;
END
$$;

-- One backfill batch of a table: the next rows after ``after`` in id order, at most
-- ``size``; returns the last id walked (NULL when there was none) and how many.
--
-- Of those rows it locks and recomputes only the ones 001's rules may change or
-- record something for (the rest keep the new columns' defaults, which are already
-- right for them): leads with client_id or a claim; clients whose conversion is not
-- the plain one-lead, both-sides-agree kind; contacts without exactly one existing
-- parent. Every other row stays untouched: no row lock, so no WAL record and no page
-- dirtied for it (at 1M leads this halves the backfill's WAL and leaves most contact
-- and client pages alone). Skipping is safe because the test reads a snapshot: a row
-- that a concurrent writer turns into one that needs work is recomputed by that
-- writer's own trigger, and a row that needs work is locked and read again here.
CREATE OR REPLACE FUNCTION migration_001_backfill(tbl text, after uuid, size integer,
                                                  OUT last_id uuid, OUT done integer)
LANGUAGE plpgsql AS $$
DECLARE
    walked uuid[];
    ids uuid[];
    orphans integer;
    archiving boolean := coalesce(current_setting('aicrm.archive_orphans', true), '') = 'on';
    start uuid := coalesce(after, '00000000-0000-0000-0000-000000000000');
BEGIN
    IF tbl = 'leads' THEN
        walked := ARRAY(SELECT id FROM leads WHERE id > start ORDER BY id LIMIT size);
    ELSIF tbl = 'clients' THEN
        walked := ARRAY(SELECT id FROM clients WHERE id > start ORDER BY id LIMIT size);
    ELSE
        walked := ARRAY(SELECT id FROM contacts WHERE id > start ORDER BY id LIMIT size);
    END IF;
    done := cardinality(walked);
    last_id := walked[done];
    IF done = 0 THEN
        RETURN;
    END IF;
    IF tbl = 'leads' THEN
        ids := ARRAY(
            SELECT l.id FROM leads AS l
            WHERE l.id > start AND l.id <= last_id
              AND (l.client_id IS NOT NULL
                   OR EXISTS (SELECT 1 FROM clients AS c WHERE c.converted_from_lead_id = l.id))
            ORDER BY l.id FOR NO KEY UPDATE OF l);
        PERFORM migration_001_sync_leads(ids, true);
        RETURN;
    ELSIF tbl = 'clients' THEN
        -- The plain kind, which needs nothing: its claim names a lead converted to it,
        -- and no other lead converted to it.
        ids := ARRAY(
            SELECT c.id FROM clients AS c
            WHERE c.id > start AND c.id <= last_id
              AND NOT (c.converted_from_lead_id IS NOT NULL
                       AND EXISTS (SELECT 1 FROM leads AS l
                                   WHERE l.id = c.converted_from_lead_id
                                     AND l.converted_to_client_id = c.id)
                       AND NOT EXISTS (SELECT 1 FROM leads AS l
                                       WHERE l.converted_to_client_id = c.id
                                         AND l.id <> c.converted_from_lead_id))
            ORDER BY c.id FOR NO KEY UPDATE OF c);
        PERFORM migration_001_sync_clients(ids, true);
        RETURN;
    END IF;
    ids := ARRAY(
        SELECT k.id FROM contacts AS k
        WHERE k.id > start AND k.id <= last_id
          AND ((k.lead_id IS NULL) = (k.client_id IS NULL)
               OR (k.lead_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM leads AS l WHERE l.id = k.lead_id))
               OR (k.client_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM clients AS c WHERE c.id = k.client_id)))
        ORDER BY k.id FOR NO KEY UPDATE OF k);
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;

    -- contacts, in 001's order: orphaned references, contacts left without a parent,
    -- then contacts with both parents
    INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
    SELECT 'contacts', k.id, 'lead_id', k.lead_id,
           'orphan_contact_lead_id: orphan reference, names no existing lead; cleared'
    FROM contacts AS k
    WHERE k.id = ANY (ids) AND k.lead_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM leads AS l WHERE l.id = k.lead_id)
    UNION ALL
    SELECT 'contacts', k.id, 'client_id', k.client_id,
           'orphan_contact_client_id: orphan reference, names no existing client; cleared'
    FROM contacts AS k
    WHERE k.id = ANY (ids) AND k.client_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM clients AS c WHERE c.id = k.client_id)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS orphans = ROW_COUNT;
    IF orphans > 0 AND NOT archiving THEN
        RAISE EXCEPTION 'orphaned references found (contacts: %); rerun with --archive-orphans to archive and clear them', orphans;
    END IF;
    UPDATE contacts AS k SET lead_id = NULL
    FROM migration_001_link_archive AS a
    WHERE k.id = ANY (ids) AND a.table_name = 'contacts' AND a.column_name = 'lead_id'
      AND a.row_id = k.id AND a.referenced_id = k.lead_id AND a.reason LIKE 'orphan\_%';
    UPDATE contacts AS k SET client_id = NULL
    FROM migration_001_link_archive AS a
    WHERE k.id = ANY (ids) AND a.table_name = 'contacts' AND a.column_name = 'client_id'
      AND a.row_id = k.id AND a.referenced_id = k.client_id AND a.reason LIKE 'orphan\_%';

    IF EXISTS (SELECT 1 FROM contacts WHERE id = ANY (ids) AND lead_id IS NULL AND client_id IS NULL) THEN
        IF NOT archiving THEN
            RAISE EXCEPTION 'contacts without any parent found; rerun with --archive-orphans to move them to migration_001_orphan_contacts';
        END IF;
        IF EXISTS (SELECT 1 FROM pg_constraint AS k
                   WHERE k.contype = 'f' AND k.confrelid = 'contacts'::regclass
                     AND k.confdeltype IN ('c', 'n', 'd')) THEN
            RAISE EXCEPTION 'cannot move contacts without a parent to migration_001_orphan_contacts: deleting them would cascade';
        END IF;
        WITH moved AS (
            DELETE FROM contacts AS k
            WHERE k.id = ANY (ids) AND k.lead_id IS NULL AND k.client_id IS NULL
            RETURNING k.*
        )
        INSERT INTO migration_001_orphan_contacts
        SELECT moved.*,
               CASE WHEN EXISTS (SELECT 1 FROM migration_001_link_archive AS a
                                 WHERE a.table_name = 'contacts' AND a.row_id = moved.id)
                    THEN 'contact_with_only_orphan_parents: its parent reference(s) named no '
                         'existing row (see migration_001_link_archive); moved whole'
                    ELSE 'contact_without_parent: neither lead_id nor client_id was set; moved whole'
               END
        FROM moved;
    END IF;

    -- Lock the leads it classifies against (FOR SHARE): a writer changing one of them
    -- waits for this batch, then classifies its cleared links again (sync_leads).
    PERFORM 1 FROM leads AS l JOIN contacts AS k ON k.lead_id = l.id
    WHERE k.id = ANY (ids) AND k.client_id IS NOT NULL
    ORDER BY l.id FOR SHARE OF l;
    WITH both_parents AS (
        UPDATE contacts AS k SET lead_id = NULL
        FROM leads AS l
        WHERE k.id = ANY (ids) AND l.id = k.lead_id AND k.client_id IS NOT NULL
        RETURNING k.id, l.id AS lead_id, k.client_id, l.converted_to_client_id
    ), archived AS (
        INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
        SELECT 'contacts', b.id, 'lead_id', b.lead_id,
               'contact_lead_link_archived: the contact also had client_id, which it keeps, '
               'and this lead did not convert to that client'
        FROM both_parents AS b
        WHERE b.converted_to_client_id IS DISTINCT FROM b.client_id
        ON CONFLICT DO NOTHING
    )
    INSERT INTO migration_001_legacy_values (table_name, column_name, row_id, legacy_value, reason)
    SELECT 'contacts', 'lead_id', b.id, b.lead_id,
           'contact_lead_implied_by_conversion: the contact also had client_id, which it keeps, '
           'and this lead converted to that client'
    FROM both_parents AS b
    WHERE b.converted_to_client_id = b.client_id
    ON CONFLICT DO NOTHING;
END
$$;

-- Trigger functions. The cascaded updates of leads (a client's claim changed) run
-- with session_replication_role = replica when the writer may set it, so that user
-- triggers do not fire for a change the application did not make (as in 001).
CREATE OR REPLACE FUNCTION migration_001_online_lead_before() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    w_id uuid;
    w_created timestamptz;
    c_id uuid;
    c_created timestamptz;
BEGIN
    IF current_setting('aicrm.backfill', true) = 'on' THEN
        RETURN NEW;  -- the backfill's own writes
    END IF;
    SELECT c.id, c.created_at INTO w_id, w_created
    FROM clients AS c WHERE c.converted_from_lead_id = NEW.id
    ORDER BY c.created_at, c.id LIMIT 1;
    SELECT c.id, c.created_at INTO c_id, c_created FROM clients AS c WHERE c.id = NEW.client_id;
    NEW.converted_to_client_id := coalesce(w_id, c_id);
    NEW.is_converted := NEW.converted_to_client_id IS NOT NULL;
    NEW.conversion_date := CASE WHEN NEW.is_converted
                                THEN greatest(coalesce(w_created, c_created), NEW.created_at) END;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION migration_001_online_lead_after() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('aicrm.backfill', true) = 'on' THEN
        RETURN NULL;  -- the backfill's own writes
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM migration_001_sync_leads(ARRAY[NEW.id]);
    ELSE
        PERFORM migration_001_sync_leads(ARRAY[OLD.id], false, ARRAY[OLD.converted_to_client_id]);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION migration_001_online_client_after() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    leads_of uuid[] := '{}';
    role text := current_setting('session_replication_role');
BEGIN
    IF current_setting('aicrm.backfill', true) = 'on' THEN
        RETURN NULL;  -- the backfill's own writes
    END IF;
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM migration_001_link_archive
        WHERE table_name = 'clients' AND column_name = 'converted_from_lead_id' AND row_id = OLD.id
          AND reason LIKE 'lead\_claimed\_by\_several\_clients:%';
        leads_of := leads_of || OLD.converted_from_lead_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        leads_of := leads_of || NEW.converted_from_lead_id;
    END IF;
    IF current_setting('is_superuser') = 'on' THEN
        PERFORM set_config('session_replication_role', 'replica', true);
    END IF;
    PERFORM migration_001_sync_leads(leads_of, false,
                                     ARRAY[CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END]);
    IF current_setting('is_superuser') = 'on' THEN
        PERFORM set_config('session_replication_role', role, true);
    END IF;
    RETURN NULL;
END
$$;

-- A contact written with both parents keeps client_id (001's rule, applied at write
-- time); one written without any parent is refused, as after 001.
CREATE OR REPLACE FUNCTION migration_001_online_contact_before() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    converted_to uuid;
BEGIN
    IF current_setting('aicrm.backfill', true) = 'on' THEN
        RETURN NEW;  -- the backfill's own writes
    END IF;
    IF NEW.lead_id IS NULL AND NEW.client_id IS NULL THEN
        RAISE EXCEPTION 'a contact needs a lead or a client (migration 001 is being applied online)'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.lead_id IS NULL OR NEW.client_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM clients WHERE id = NEW.client_id)
       OR NOT EXISTS (SELECT 1 FROM leads WHERE id = NEW.lead_id) THEN
        RETURN NEW;  -- one parent, or a reference its foreign key refuses anyway
    END IF;
    PERFORM 1 FROM leads WHERE id = NEW.lead_id FOR SHARE;  -- see the contacts pass
    SELECT r.client_id INTO converted_to FROM migration_001_resolve(ARRAY[NEW.lead_id]) AS r;
    DELETE FROM migration_001_link_archive
    WHERE table_name = 'contacts' AND column_name = 'lead_id' AND row_id = NEW.id;
    DELETE FROM migration_001_legacy_values
    WHERE table_name = 'contacts' AND column_name = 'lead_id' AND row_id = NEW.id;
    IF converted_to IS NOT DISTINCT FROM NEW.client_id THEN
        INSERT INTO migration_001_legacy_values (table_name, column_name, row_id, legacy_value, reason)
        VALUES ('contacts', 'lead_id', NEW.id, NEW.lead_id,
                'contact_lead_implied_by_conversion: the contact also had client_id, which it '
                'keeps, and this lead converted to that client');
    ELSE
        INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
        VALUES ('contacts', NEW.id, 'lead_id', NEW.lead_id,
                'contact_lead_link_archived: the contact also had client_id, which it keeps, '
                'and this lead did not convert to that client');
    END IF;
    NEW.lead_id := NULL;
    RETURN NEW;
END
$$;

-- step: triggers on leads
CREATE OR REPLACE TRIGGER migration_001_online_lead_before
    BEFORE INSERT OR UPDATE OF client_id, created_at ON leads
    FOR EACH ROW EXECUTE FUNCTION migration_001_online_lead_before();
CREATE OR REPLACE TRIGGER migration_001_online_lead_after
    AFTER INSERT OR UPDATE OF client_id, created_at OR DELETE ON leads
    FOR EACH ROW EXECUTE FUNCTION migration_001_online_lead_after();

-- step: triggers on clients
CREATE OR REPLACE TRIGGER migration_001_online_client_after
    AFTER INSERT OR UPDATE OF converted_from_lead_id, created_at OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION migration_001_online_client_after();

-- step: triggers on contacts
CREATE OR REPLACE TRIGGER migration_001_online_contact_before
    BEFORE INSERT OR UPDATE OF lead_id, client_id ON contacts
    FOR EACH ROW EXECUTE FUNCTION migration_001_online_contact_before();

-- phase: backfill leads, clients, contacts by migration_001_backfill
-- The rows written before expand, table by table, in batches that commit with
-- their progress: migration_001_backfill (defined in expand) does one batch.

-- phase: contract constraints
-- Online migration 001, phase "contract", part 1: the key and the CHECKs, NOT VALID.
-- Each is checked for every row written from now on at once; the next part
-- validates the existing rows without blocking writes. Each step is one short
-- transaction under a short lock_timeout (retried with backoff), and skipped when
-- the constraint already exists (a resumed run).

-- step: the one-way foreign key, NOT VALID
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'leads'::regclass
                   AND conname = 'leads_converted_to_client_id_fkey') THEN
        ALTER TABLE leads
            ADD CONSTRAINT leads_converted_to_client_id_fkey
                FOREIGN KEY (converted_to_client_id) REFERENCES clients (id) NOT VALID;
    END IF;
END
$$;

-- step: the conversion CHECK, NOT VALID
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'leads'::regclass
                   AND conname = 'leads_conversion_consistent') THEN
        ALTER TABLE leads
            ADD CONSTRAINT leads_conversion_consistent CHECK (
                is_converted = (converted_to_client_id IS NOT NULL)
                AND is_converted = (conversion_date IS NOT NULL)
            ) NOT VALID;
    END IF;
END
$$;

-- step: the contacts CHECK, NOT VALID
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'contacts'::regclass
                   AND conname = 'contacts_one_parent') THEN
        ALTER TABLE contacts
            ADD CONSTRAINT contacts_one_parent CHECK (num_nonnulls(lead_id, client_id) = 1) NOT VALID;
    END IF;
END
$$;
COMMENT ON CONSTRAINT contacts_one_parent ON contacts IS
    'A contact is linked to either leads OR clients (migration 001).';

-- phase: contract validate (unhurried)
-- Online migration 001, phase "contract", part 2: validate the key and the CHECKs.
-- VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE: reads and writes go on while it
-- scans. One statement per transaction; validating a valid constraint is a no-op.

-- step: validate the one-way foreign key
ALTER TABLE leads VALIDATE CONSTRAINT leads_converted_to_client_id_fkey;

-- step: validate the conversion CHECK
ALTER TABLE leads VALIDATE CONSTRAINT leads_conversion_consistent;

-- step: validate the contacts CHECK
ALTER TABLE contacts VALIDATE CONSTRAINT contacts_one_parent;

-- phase: contract indexes
-- Online migration 001, phase "contract", part 3: the last index, CONCURRENTLY.
-- (leads_converted_to_client_id_idx was built in expand: the backfill uses it.) An
-- invalid index of the same name, left by an interrupted run, is dropped first.

-- step: index is_converted (CONCURRENTLY)
-- aicrm:autocommit
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_is_converted_idx ON leads (is_converted);

-- phase: switch
-- Online migration 001, phase "contract", part 4: the switch, in one short
-- transaction under ACCESS EXCLUSIVE locks on leads, clients and contacts (taken
-- first, in that order, under a short lock_timeout, retried with backoff). Catalog
-- changes only: no row is read or written but 001's own bookkeeping. The runner
-- then writes the ledger row of 001 and runs 001's verification checks in this
-- same transaction: the ledger says 001 exactly when the schema is 001.

-- step: stop the online triggers and drop their functions
DROP TRIGGER IF EXISTS migration_001_online_lead_before ON leads;
DROP TRIGGER IF EXISTS migration_001_online_lead_after ON leads;
DROP TRIGGER IF EXISTS migration_001_online_client_after ON clients;
DROP TRIGGER IF EXISTS migration_001_online_contact_before ON contacts;
DROP FUNCTION IF EXISTS migration_001_online_lead_before();
DROP FUNCTION IF EXISTS migration_001_online_lead_after();
DROP FUNCTION IF EXISTS migration_001_online_client_after();
DROP FUNCTION IF EXISTS migration_001_online_contact_before();
DROP FUNCTION IF EXISTS migration_001_backfill(text, uuid, integer);
DROP FUNCTION IF EXISTS migration_001_sync_leads(uuid[], boolean, uuid[]);
DROP FUNCTION IF EXISTS migration_001_sync_clients(uuid[], boolean);
DROP FUNCTION IF EXISTS migration_001_resolve(uuid[]);
-- The switch is one transaction (no CONCURRENTLY there), already holding ACCESS
-- EXCLUSIVE on the CRM's tables; these indexes are on 001's own tables.
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX IF EXISTS migration_001_online_archive_lead_idx;
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX IF EXISTS migration_001_online_values_lead_idx;

-- step: record the legacy columns' types, constraints and indexes (as 001 does)
DELETE FROM migration_001_legacy_objects;
INSERT INTO migration_001_legacy_objects (table_name, column_name, kind, name, definition)
SELECT c.relname, a.attname, 'column', a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
WHERE (a.attrelid, a.attname) IN (('leads'::regclass, 'client_id'),
                                  ('clients'::regclass, 'converted_from_lead_id'))
  AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT c.relname, a.attname, 'constraint', k.conname, pg_get_constraintdef(k.oid)
FROM pg_constraint AS k
JOIN pg_class AS c ON c.oid = k.conrelid
JOIN pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
WHERE (a.attrelid, a.attname) IN (('leads'::regclass, 'client_id'),
                                  ('clients'::regclass, 'converted_from_lead_id'))
UNION ALL
SELECT DISTINCT c.relname, a.attname, 'index', i.relname, pg_get_indexdef(i.oid)
FROM pg_depend AS d
JOIN pg_class AS i ON i.oid = d.objid AND d.classid = 'pg_class'::regclass AND i.relkind = 'i'
JOIN pg_class AS c ON c.oid = d.refobjid
JOIN pg_attribute AS a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refclassid = 'pg_class'::regclass
  AND (a.attrelid, a.attname) IN (('leads'::regclass, 'client_id'),
                                  ('clients'::regclass, 'converted_from_lead_id'))
  AND i.relname <> 'migration_001_claims_idx'  -- the online run's own helper
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.oid
                  AND k.contype IN ('p', 'u', 'x'));

-- step: drop the circular foreign keys (found by their columns) and the legacy columns
DO $$
DECLARE
    k record;
BEGIN
    FOR k IN
        SELECT con.conrelid::regclass::text AS tbl, con.conname
        FROM pg_constraint AS con
        WHERE con.contype = 'f'
          AND ((con.conrelid = 'leads'::regclass AND con.confrelid = 'clients'::regclass
                AND (SELECT attnum FROM pg_attribute WHERE attrelid = 'leads'::regclass
                     AND attname = 'client_id') = ANY (con.conkey))
            OR (con.conrelid = 'clients'::regclass AND con.confrelid = 'leads'::regclass
                AND (SELECT attnum FROM pg_attribute WHERE attrelid = 'clients'::regclass
                     AND attname = 'converted_from_lead_id') = ANY (con.conkey)))
        ORDER BY 1, 2
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', k.tbl, k.conname);
    END LOOP;
END
$$;
ALTER TABLE leads DROP COLUMN client_id;
ALTER TABLE clients DROP COLUMN converted_from_lead_id;

-- step: create the views
CREATE VIEW lead_conversion_summary AS
SELECT coalesce(l.source, 'unknown') AS source,
       count(*) AS total_leads,
       count(*) FILTER (WHERE l.is_converted) AS converted_leads,
       count(*) FILTER (WHERE NOT l.is_converted) AS active_leads,
       count(*) FILTER (WHERE l.is_converted)::numeric / count(*) AS conversion_rate,
       avg(extract(epoch FROM l.conversion_date - l.created_at) / 86400)
           FILTER (WHERE l.is_converted) AS avg_days_to_convert
FROM leads AS l
GROUP BY coalesce(l.source, 'unknown');
COMMENT ON VIEW lead_conversion_summary IS
    'Leads per source (NULL as unknown): totals, converted, active (not converted), '
    'conversion_rate (0 to 1) and the mean days from created_at to conversion_date.';

CREATE VIEW client_lead_history AS
SELECT c.id AS client_id,
       c.name AS client_name,
       l.id AS lead_id,
       l.email AS lead_email,
       l.source AS lead_source,
       l.created_at AS lead_created_at,
       l.conversion_date,
       extract(epoch FROM l.conversion_date - l.created_at) / 86400 AS days_to_convert
FROM leads AS l
JOIN clients AS c ON c.id = l.converted_to_client_id
WHERE l.is_converted;
COMMENT ON VIEW client_lead_history IS
    'One row per converted lead: its client, the lead, and the days it took to convert.';

-- phase: abort
-- Online migration 001: back to 000 from an unfinished online run, whatever its
-- phase (`aicrm db downgrade 000`). One transaction, under ACCESS EXCLUSIVE locks on
-- leads, clients and contacts taken first. The legacy columns are still there and
-- were never written by the run; only contacts changed (orphaned references cleared,
-- contacts without a parent moved, lead links of contacts with both parents
-- cleared), and each of those changes is in 001's tables: put them back, then drop
-- everything the run added. Runs with session_replication_role = replica when the
-- runner may set it (user triggers do not fire, no updated_at changes).

-- step: stop the online triggers and drop their functions
DROP TRIGGER IF EXISTS migration_001_online_lead_before ON leads;
DROP TRIGGER IF EXISTS migration_001_online_lead_after ON leads;
DROP TRIGGER IF EXISTS migration_001_online_client_after ON clients;
DROP TRIGGER IF EXISTS migration_001_online_contact_before ON contacts;
DROP FUNCTION IF EXISTS migration_001_online_lead_before();
DROP FUNCTION IF EXISTS migration_001_online_lead_after();
DROP FUNCTION IF EXISTS migration_001_online_client_after();
DROP FUNCTION IF EXISTS migration_001_online_contact_before();
DROP FUNCTION IF EXISTS migration_001_backfill(text, uuid, integer);
DROP FUNCTION IF EXISTS migration_001_sync_leads(uuid[], boolean, uuid[]);
DROP FUNCTION IF EXISTS migration_001_sync_clients(uuid[], boolean);
DROP FUNCTION IF EXISTS migration_001_resolve(uuid[]);

-- step: drop 001's constraints (the contacts CHECK would refuse the links put back)
ALTER TABLE contacts DROP CONSTRAINT IF EXISTS contacts_one_parent;
ALTER TABLE leads
    DROP CONSTRAINT IF EXISTS leads_conversion_consistent,
    DROP CONSTRAINT IF EXISTS leads_converted_to_client_id_fkey;

-- step: put back the moved contacts and the contacts' cleared links
DO $$
DECLARE
    cols text;
BEGIN
    IF to_regclass('migration_001_orphan_contacts') IS NOT NULL THEN
        SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute AS a
        WHERE a.attrelid = 'contacts'::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attgenerated = ''
          AND EXISTS (SELECT 1 FROM pg_attribute AS o
                      WHERE o.attrelid = 'migration_001_orphan_contacts'::regclass
                        AND o.attname = a.attname AND NOT o.attisdropped);
        EXECUTE format('INSERT INTO contacts (%s) OVERRIDING SYSTEM VALUE SELECT %s '
                       'FROM migration_001_orphan_contacts', cols, cols);
    END IF;
    IF to_regclass('migration_001_link_archive') IS NOT NULL THEN
        UPDATE contacts AS c SET lead_id = a.referenced_id
        FROM migration_001_link_archive AS a
        WHERE a.table_name = 'contacts' AND a.column_name = 'lead_id' AND a.row_id = c.id;
        UPDATE contacts AS c SET client_id = a.referenced_id
        FROM migration_001_link_archive AS a
        WHERE a.table_name = 'contacts' AND a.column_name = 'client_id' AND a.row_id = c.id;
    END IF;
    IF to_regclass('migration_001_legacy_values') IS NOT NULL THEN
        UPDATE contacts AS c SET lead_id = v.legacy_value
        FROM migration_001_legacy_values AS v
        WHERE v.table_name = 'contacts' AND v.column_name = 'lead_id' AND v.row_id = c.id;
    END IF;
END
$$;

-- step: drop the conversion fields (their indexes go with them), the helper index and 001's tables
-- The abort is one transaction under ACCESS EXCLUSIVE locks (no CONCURRENTLY there).
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX IF EXISTS migration_001_claims_idx;
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX IF EXISTS leads_is_converted_idx;
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX IF EXISTS leads_converted_to_client_id_idx;
ALTER TABLE leads
    DROP COLUMN IF EXISTS converted_to_client_id,
    DROP COLUMN IF EXISTS conversion_date,
    DROP COLUMN IF EXISTS is_converted;
DROP TABLE IF EXISTS migration_001_link_archive;
DROP TABLE IF EXISTS migration_001_orphan_contacts;
DROP TABLE IF EXISTS migration_001_legacy_values;
DROP TABLE IF EXISTS migration_001_legacy_objects;
