-- Migration 001: resolve the circular foreign key between clients and leads.
--
-- Before: clients.converted_from_lead_id -> leads and leads.client_id -> clients.
-- After:  leads.converted_to_client_id -> clients (one way), with conversion_date and
--         is_converted kept in agreement by a CHECK; contacts linked to a lead OR a
--         client. Design, rules and the way back: docs/migration-001.md.
--
-- Every legacy reference the new columns cannot express goes to
-- migration_001_link_archive with its reason; what an exact downgrade needs besides
-- (one-sided conversions, the original key and index definitions) goes to
-- migration_001_legacy_values and migration_001_legacy_objects. The engine's
-- integrity checks (001_resolve_circular_fk.checks.sql) report the same categories
-- before anything changes; the reasons below start with the name of their check.
--
-- Written for a 1M-lead database in one transaction: set-based statements only,
-- columns added without a table rewrite, indexes built after the backfill. The reads
-- that need no lock (each lead's conversion, the orphaned references) run first,
-- before the ACCESS EXCLUSIVE locks, from a snapshot; under the locks only the rows
-- written since that snapshot are resolved again (docs/migration-001.md, "Lock time").
--
-- aicrm:lock leads, clients, contacts
--
-- The version before the lock-time change (everything under the locks) made the same
-- change to the same end state; a database that applied it is not drift:
-- aicrm:earlier-checksum 4c5a2b5d10856ee25e9495927202da832b753dab40e398e5b6754756c16ab6ef

-- step: before the locks: resolve each lead's conversion and find orphans, from a snapshot
-- aicrm:before-lock
-- Nothing here locks more than a reader does (ACCESS SHARE, which also keeps other
-- DDL off the three tables until the commit). Every row written after the snapshot
-- has an xmin the snapshot does not see as committed: the step under the locks
-- ("apply what was written since the snapshot") finds those and resolves them again.
--
-- Whether a row was written since the snapshot: its xmin is not older than the
-- snapshot's xmin (age(xmin), counted from this transaction's xid, is at most the
-- age of that xmin). Any xid from the snapshot's xmin on counts, even one of a
-- transaction that had finished by then: pg_snapshot lists no subtransaction ids, so
-- "finished" cannot be told for those; counting too many only resolves a few rows
-- twice. Frozen rows are the oldest of all.

-- Each lead's conversion (all leads, or only those in only_leads): the client whose
-- converted_from_lead_id names it (several: earliest created_at, then lowest id),
-- otherwise leads.client_id. conversion_date = GREATEST(that client's created_at,
-- the lead's created_at).
CREATE FUNCTION migration_001_resolve(only_leads uuid[])
RETURNS TABLE (lead_id uuid, client_id uuid, conversion_date timestamptz, claimed boolean,
               legacy_client_id uuid, legacy_client_found uuid)
LANGUAGE sql STABLE
AS $$
SELECT l.id,
       coalesce(w.client_id, lc.id),
       greatest(coalesce(w.created_at, lc.created_at), l.created_at),
       w.client_id IS NOT NULL,
       l.client_id,      -- as it was (NULL, a client, or an orphan)
       lc.id             -- the same when it names a client, else NULL
FROM leads AS l
LEFT JOIN (
    SELECT DISTINCT ON (c.converted_from_lead_id)
           c.converted_from_lead_id AS lead_id, c.id AS client_id, c.created_at
    FROM clients AS c
    WHERE c.converted_from_lead_id IS NOT NULL
      AND (only_leads IS NULL OR c.converted_from_lead_id = ANY (only_leads))
    ORDER BY c.converted_from_lead_id, c.created_at, c.id
) AS w ON w.lead_id = l.id
LEFT JOIN clients AS lc ON lc.id = l.client_id
WHERE (w.client_id IS NOT NULL OR lc.id IS NOT NULL)
  AND (only_leads IS NULL OR l.id = ANY (only_leads))
$$;

-- Orphaned references of every row (or only of the rows in the arrays): those that
-- name no existing row. Their reason starts with the name of their integrity check.
CREATE FUNCTION migration_001_find_orphans(only_leads uuid[], only_clients uuid[],
                                           only_contacts uuid[])
RETURNS TABLE (table_name text, row_id uuid, column_name text, referenced_id uuid,
               reason text)
LANGUAGE sql STABLE
AS $$
SELECT 'leads', l.id, 'client_id', l.client_id,
       'orphan_lead_client_id: orphan reference, names no existing client; cleared'
FROM leads AS l
WHERE l.client_id IS NOT NULL
  AND (only_leads IS NULL OR l.id = ANY (only_leads))
  AND NOT EXISTS (SELECT 1 FROM clients AS c WHERE c.id = l.client_id)
UNION ALL
SELECT 'clients', c.id, 'converted_from_lead_id', c.converted_from_lead_id,
       'orphan_client_converted_from_lead_id: orphan reference, names no existing lead; cleared'
FROM clients AS c
WHERE c.converted_from_lead_id IS NOT NULL
  AND (only_clients IS NULL OR c.id = ANY (only_clients))
  AND NOT EXISTS (SELECT 1 FROM leads AS l WHERE l.id = c.converted_from_lead_id)
UNION ALL
SELECT 'contacts', k.id, 'lead_id', k.lead_id,
       'orphan_contact_lead_id: orphan reference, names no existing lead; cleared'
FROM contacts AS k
WHERE k.lead_id IS NOT NULL
  AND (only_contacts IS NULL OR k.id = ANY (only_contacts))
  AND NOT EXISTS (SELECT 1 FROM leads AS l WHERE l.id = k.lead_id)
UNION ALL
SELECT 'contacts', k.id, 'client_id', k.client_id,
       'orphan_contact_client_id: orphan reference, names no existing client; cleared'
FROM contacts AS k
WHERE k.client_id IS NOT NULL
  AND (only_contacts IS NULL OR k.id = ANY (only_contacts))
  AND NOT EXISTS (SELECT 1 FROM clients AS c WHERE c.id = k.client_id)
$$;

-- The snapshot's xmin (taken first: every later statement sees at least what it saw),
-- then the ids of the leads and clients as seen, to count under the locks whether any
-- was deleted meanwhile.
CREATE UNLOGGED TABLE migration_001_snapshot AS
SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint % 4294967296)::text::xid AS since_xmin;
CREATE UNLOGGED TABLE migration_001_seen AS
SELECT 'leads'::text AS table_name, id FROM leads
UNION ALL
SELECT 'clients', id FROM clients;
CREATE INDEX migration_001_seen_idx ON migration_001_seen (id);

CREATE UNLOGGED TABLE migration_001_orphans AS SELECT * FROM migration_001_find_orphans(NULL, NULL, NULL);
CREATE UNLOGGED TABLE migration_001_work AS SELECT * FROM migration_001_resolve(NULL);
ANALYZE migration_001_work;

-- What the new fields cannot express, from the resolution: later claims of a lead an
-- earlier client also names (of every claim, or of the leads and clients given) ...
CREATE FUNCTION migration_001_lost_claims(only_leads uuid[], only_clients uuid[])
RETURNS TABLE (row_id uuid, referenced_id uuid)
LANGUAGE sql STABLE
AS $$
SELECT c.id, c.converted_from_lead_id
FROM clients AS c
JOIN migration_001_work AS w ON w.lead_id = c.converted_from_lead_id
WHERE w.client_id <> c.id
  AND (only_leads IS NULL OR c.converted_from_lead_id = ANY (only_leads)
       OR c.id = ANY (only_clients))
$$;
CREATE UNLOGGED TABLE migration_001_lost AS SELECT * FROM migration_001_lost_claims(NULL, NULL);

-- ... and the legacy converted_from_lead_id of clients the downgrade would otherwise
-- rebuild differently: it gives a client the lead converted to it when there is
-- exactly one (of every client, or of those given).
CREATE FUNCTION migration_001_client_values(only_clients uuid[])
RETURNS TABLE (row_id uuid, legacy_value uuid, reason text)
LANGUAGE sql STABLE
AS $$
SELECT c.id, c.converted_from_lead_id,
       CASE WHEN c.converted_from_lead_id IS NULL
            THEN 'client_converted_only_on_lead_side: its lead''s client_id names it, its '
                 'converted_from_lead_id was empty'
            ELSE 'client_converted_from_several_leads: the lead its converted_from_lead_id '
                 'named, among several leads converted to it'
       END
FROM (SELECT w.client_id, count(*) AS leads FROM migration_001_work AS w
      WHERE only_clients IS NULL OR w.client_id = ANY (only_clients)
      GROUP BY w.client_id) AS n
JOIN clients AS c ON c.id = n.client_id
LEFT JOIN migration_001_work AS own ON own.lead_id = c.converted_from_lead_id
                                   AND own.client_id = c.id
WHERE (n.leads = 1 AND c.converted_from_lead_id IS NULL)
   OR (n.leads > 1 AND own.lead_id IS NOT NULL)
$$;
CREATE UNLOGGED TABLE migration_001_values AS SELECT * FROM migration_001_client_values(NULL);

-- Contacts with both parents (and, under the locks, every contact written since).
CREATE UNLOGGED TABLE migration_001_both AS
SELECT id FROM contacts WHERE lead_id IS NOT NULL AND client_id IS NOT NULL;
ANALYZE migration_001_both;

-- step: prepare: 001's archive and bookkeeping tables
-- Pending deferred trigger events (deferrable keys, on these tables or ones that
-- reference them) would forbid the ALTER TABLEs below: check each row at once.
SET CONSTRAINTS ALL IMMEDIATE;

CREATE TABLE migration_001_link_archive (
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

-- Whole contacts that --archive-orphans leaves without any parent: the contacts CHECK
-- (exactly one of lead_id, client_id) cannot hold them, so they move here.
CREATE TABLE migration_001_orphan_contacts (LIKE contacts);
ALTER TABLE migration_001_orphan_contacts ADD COLUMN reason text NOT NULL;
COMMENT ON TABLE migration_001_orphan_contacts IS
    'Migration 001: contacts that had no existing parent, moved whole (their cleared '
    'orphan references are in migration_001_link_archive). The downgrade puts them back.';

-- Legacy column values that the new structure alone would rebuild differently: the
-- downgrade applies them after deriving the old columns from the new ones.
CREATE TABLE migration_001_legacy_values (
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

-- The dropped columns' types and every constraint and index on them, under their
-- real names, so the downgrade recreates them exactly.
CREATE TABLE migration_001_legacy_objects (
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
-- Indexes on (or with an expression or predicate over) the columns, but those that
-- belong to a constraint (recreated with it).
SELECT DISTINCT c.relname, a.attname, 'index', i.relname, pg_get_indexdef(i.oid)
FROM pg_depend AS d
JOIN pg_class AS i ON i.oid = d.objid AND d.classid = 'pg_class'::regclass AND i.relkind = 'i'
JOIN pg_class AS c ON c.oid = d.refobjid
JOIN pg_attribute AS a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refclassid = 'pg_class'::regclass
  AND (a.attrelid, a.attname) IN (('leads'::regclass, 'client_id'),
                                  ('clients'::regclass, 'converted_from_lead_id'))
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.oid
                  AND k.contype IN ('p', 'u', 'x'));

-- step: disable the enabled user triggers of leads, clients and contacts
-- The backfill must not fire them (an updated_at trigger would restamp every row).
-- Each trigger's mode is kept in a transaction-local setting and restored at the end;
-- no session_replication_role, so the tables' owner can run this without superuser.
DO $$
DECLARE
    t record;
    saved jsonb := '[]';
BEGIN
    FOR t IN
        SELECT c.relname, g.tgname, g.tgenabled::text AS mode
        FROM pg_trigger AS g JOIN pg_class AS c ON c.oid = g.tgrelid
        WHERE g.tgrelid IN ('leads'::regclass, 'clients'::regclass, 'contacts'::regclass)
          AND NOT g.tgisinternal AND g.tgenabled <> 'D'
        ORDER BY c.relname, g.tgname
    LOOP
        EXECUTE format('ALTER TABLE %I DISABLE TRIGGER %I', t.relname, t.tgname);
        saved := saved || jsonb_build_object('table', t.relname, 'trigger', t.tgname,
                                             'mode', t.mode);
    END LOOP;
    PERFORM set_config('aicrm.m001_triggers', saved::text, true);
END
$$;

-- step: apply what was written since the snapshot
-- Under the locks nobody writes any more. A row written after the snapshot (inserted
-- or updated: a new xmin) is resolved again, with every lead whose resolution it can
-- change. A lead or client deleted meanwhile (rare: the ids seen then are counted
-- against those still here) makes it start over, under the locks, from scratch.
DO $$
DECLARE
    horizon integer := age((SELECT since_xmin FROM migration_001_snapshot));
    new_leads uuid[];
    new_clients uuid[];
    new_contacts uuid[];
    unchanged bigint;
    present bigint := 0;
    recheck uuid[];
    affected uuid[];
BEGIN
    SELECT count(*) FILTER (WHERE age(xmin) > horizon),
           coalesce(array_agg(id) FILTER (WHERE age(xmin) <= horizon), '{}')
    INTO unchanged, new_leads FROM leads;
    present := present + unchanged;
    SELECT count(*) FILTER (WHERE age(xmin) > horizon),
           coalesce(array_agg(id) FILTER (WHERE age(xmin) <= horizon), '{}')
    INTO unchanged, new_clients FROM clients;
    present := present + unchanged;
    SELECT coalesce(array_agg(id) FILTER (WHERE age(xmin) <= horizon), '{}')
    INTO new_contacts FROM contacts;
    INSERT INTO migration_001_both SELECT unnest(new_contacts);
    -- Leads and clients seen before the locks and still here: unchanged, or written
    -- since with an id that was seen (an update).
    present := present + (SELECT count(*) FROM migration_001_seen AS s
                          WHERE s.id = ANY (new_leads || new_clients)
                            AND ((s.table_name = 'leads' AND s.id = ANY (new_leads))
                                 OR (s.table_name = 'clients' AND s.id = ANY (new_clients))));
    IF present < (SELECT count(*) FROM migration_001_seen) THEN
        TRUNCATE migration_001_work, migration_001_orphans, migration_001_lost,
            migration_001_values;
        INSERT INTO migration_001_work SELECT * FROM migration_001_resolve(NULL);
        INSERT INTO migration_001_orphans SELECT * FROM migration_001_find_orphans(NULL, NULL, NULL);
        INSERT INTO migration_001_lost SELECT * FROM migration_001_lost_claims(NULL, NULL);
        INSERT INTO migration_001_values SELECT * FROM migration_001_client_values(NULL);
        RETURN;
    END IF;
    -- Leads to resolve again: written since, claimed by a client written since, or
    -- resolved to (or naming) a client written since.
    recheck := ARRAY(
        SELECT unnest(new_leads)
        UNION
        SELECT c.converted_from_lead_id FROM clients AS c
        WHERE c.id = ANY (new_clients) AND c.converted_from_lead_id IS NOT NULL
        UNION
        SELECT w.lead_id FROM migration_001_work AS w
        WHERE w.client_id = ANY (new_clients) OR w.legacy_client_found = ANY (new_clients));
    -- Clients whose legacy value may change: those written since, and those the leads
    -- resolved again were and are resolved to.
    affected := new_clients || ARRAY(SELECT client_id FROM migration_001_work
                                     WHERE lead_id = ANY (recheck));
    DELETE FROM migration_001_work WHERE lead_id = ANY (recheck);
    INSERT INTO migration_001_work SELECT * FROM migration_001_resolve(recheck);
    affected := affected || ARRAY(SELECT client_id FROM migration_001_work
                                  WHERE lead_id = ANY (recheck));
    DELETE FROM migration_001_lost WHERE referenced_id = ANY (recheck) OR row_id = ANY (new_clients);
    INSERT INTO migration_001_lost SELECT * FROM migration_001_lost_claims(recheck, new_clients);
    DELETE FROM migration_001_values WHERE row_id = ANY (affected);
    INSERT INTO migration_001_values SELECT * FROM migration_001_client_values(affected);
    -- Orphaned references: those found then and the rows written since, checked again
    -- (a parent may have been added since; a contact may be gone).
    new_leads := new_leads || ARRAY(SELECT row_id FROM migration_001_orphans
                                    WHERE table_name = 'leads');
    new_clients := new_clients || ARRAY(SELECT row_id FROM migration_001_orphans
                                        WHERE table_name = 'clients');
    new_contacts := new_contacts || ARRAY(SELECT row_id FROM migration_001_orphans
                                          WHERE table_name = 'contacts');
    TRUNCATE migration_001_orphans;
    INSERT INTO migration_001_orphans
    SELECT * FROM migration_001_find_orphans(new_leads, new_clients, new_contacts);
END
$$;

-- step: orphaned references: archive them, or refuse without --archive-orphans
INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
SELECT table_name, row_id, column_name, referenced_id, reason FROM migration_001_orphans;

DO $$
DECLARE
    archiving boolean := coalesce(current_setting('aicrm.archive_orphans', true), '') = 'on';
    found_orphans text;
BEGIN
    SELECT string_agg(format('%s.%s: %s', table_name, column_name, n), ', ')
    INTO found_orphans
    FROM (SELECT table_name, column_name, count(*) AS n FROM migration_001_link_archive
          GROUP BY 1, 2 ORDER BY 1, 2) AS counted;
    IF found_orphans IS NULL THEN
        RETURN;
    END IF;
    IF NOT archiving THEN
        -- The engine's integrity checks refuse this before any change; this only
        -- catches orphans written between those checks and the table locks.
        RAISE EXCEPTION 'orphaned references found (%); rerun with --archive-orphans to archive and clear them',
            found_orphans;
    END IF;
    -- leads.client_id and clients.converted_from_lead_id are dropped below and the
    -- conversion rules ignore orphans; the contacts' columns stay, so clear them.
    UPDATE contacts AS k SET lead_id = NULL
    FROM migration_001_link_archive AS a
    WHERE a.table_name = 'contacts' AND a.column_name = 'lead_id' AND a.row_id = k.id;
    UPDATE contacts AS k SET client_id = NULL
    FROM migration_001_link_archive AS a
    WHERE a.table_name = 'contacts' AND a.column_name = 'client_id' AND a.row_id = k.id;
END
$$;

-- step: move contacts without any parent (only with --archive-orphans)
DO $$
DECLARE
    cascading text;
BEGIN
    IF coalesce(current_setting('aicrm.archive_orphans', true), '') <> 'on'
       OR NOT EXISTS (SELECT 1 FROM contacts WHERE lead_id IS NULL AND client_id IS NULL) THEN
        RETURN;  -- without the flag the engine refused them already (and the CHECK would)
    END IF;
    -- Moving a contact deletes it from contacts: refuse if that would cascade.
    SELECT string_agg(format('%s.%s', k.conrelid::regclass, k.conname), ', ') INTO cascading
    FROM pg_constraint AS k
    WHERE k.contype = 'f' AND k.confrelid = 'contacts'::regclass AND k.confdeltype IN ('c', 'n', 'd');
    IF cascading IS NOT NULL THEN
        RAISE EXCEPTION 'cannot move contacts without a parent to migration_001_orphan_contacts: '
            'deleting them would cascade through %', cascading;
    END IF;
    WITH moved AS (
        DELETE FROM contacts AS k WHERE k.lead_id IS NULL AND k.client_id IS NULL RETURNING k.*
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
END
$$;

-- step: add the conversion fields (no table rewrite: NULL columns and a constant default)
ALTER TABLE leads
    ADD COLUMN converted_to_client_id uuid NULL,
    ADD COLUMN conversion_date timestamptz NULL,
    ADD COLUMN is_converted boolean NOT NULL DEFAULT false;

-- step: record each lead's conversion and archive what the new fields cannot express
-- (Resolved before the locks, and again under them for what was written since: the
-- function migration_001_resolve at the top.)
INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
-- later claims of a lead that an earlier client also names
SELECT 'clients', x.row_id, 'converted_from_lead_id', x.referenced_id,
       'lead_claimed_by_several_clients: an earlier client (created_at, then id) also '
       'names this lead and keeps the conversion'
FROM migration_001_lost AS x
UNION ALL
-- a lead's client_id naming another client than the one that claims the lead
SELECT 'leads', w.lead_id, 'client_id', w.legacy_client_found,
       'lead_client_id_disagrees: names another client than the one whose '
       'converted_from_lead_id names the lead; that client keeps the conversion'
FROM migration_001_work AS w
WHERE w.claimed AND w.legacy_client_found <> w.client_id;

INSERT INTO migration_001_legacy_values (table_name, column_name, row_id, legacy_value, reason)
SELECT 'leads', 'client_id', w.lead_id, NULL,
       'lead_converted_only_on_client_side: a client names the lead, its client_id was empty'
FROM migration_001_work AS w
WHERE w.claimed AND w.legacy_client_id IS NULL
UNION ALL
SELECT 'clients', 'converted_from_lead_id', x.row_id, x.legacy_value, x.reason
FROM migration_001_values AS x;

UPDATE leads AS l
SET converted_to_client_id = w.client_id,
    conversion_date = w.conversion_date,
    is_converted = true
FROM migration_001_work AS w
WHERE l.id = w.lead_id;

-- step: contacts with both parents keep client_id
-- The lead link is archived, unless that lead converted to that same client (then
-- the conversion implies it; kept in legacy_values for the downgrade only).
WITH both_parents AS (
    UPDATE contacts AS k SET lead_id = NULL
    FROM (SELECT DISTINCT id FROM migration_001_both) AS b, leads AS l
    WHERE k.id = b.id AND l.id = k.lead_id AND k.client_id IS NOT NULL
    RETURNING k.id, l.id AS lead_id, k.client_id, l.converted_to_client_id
), archived AS (
    INSERT INTO migration_001_link_archive (table_name, row_id, column_name, referenced_id, reason)
    SELECT 'contacts', b.id, 'lead_id', b.lead_id,
           'contact_lead_link_archived: the contact also had client_id, which it keeps, '
           'and this lead did not convert to that client'
    FROM both_parents AS b
    WHERE b.converted_to_client_id IS DISTINCT FROM b.client_id
)
INSERT INTO migration_001_legacy_values (table_name, column_name, row_id, legacy_value, reason)
SELECT 'contacts', 'lead_id', b.id, b.lead_id,
       'contact_lead_implied_by_conversion: the contact also had client_id, which it keeps, '
       'and this lead converted to that client'
FROM both_parents AS b
WHERE b.converted_to_client_id = b.client_id;

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
-- Their other constraints and indexes go with them (recorded for the downgrade); a
-- view or trigger that depends on them stops the migration here instead.
ALTER TABLE leads DROP COLUMN client_id;
ALTER TABLE clients DROP COLUMN converted_from_lead_id;

-- step: add the one-way foreign key and the CHECKs
ALTER TABLE leads
    ADD CONSTRAINT leads_converted_to_client_id_fkey
        FOREIGN KEY (converted_to_client_id) REFERENCES clients (id),
    ADD CONSTRAINT leads_conversion_consistent CHECK (
        is_converted = (converted_to_client_id IS NOT NULL)
        AND is_converted = (conversion_date IS NOT NULL)
    );
ALTER TABLE contacts
    ADD CONSTRAINT contacts_one_parent CHECK (num_nonnulls(lead_id, client_id) = 1);
COMMENT ON CONSTRAINT contacts_one_parent ON contacts IS
    'A contact is linked to either leads OR clients (migration 001).';

-- step: indexes for the new fields
-- The foreign key's column (lookups by client, the RI check on clients): partial, as
-- most leads never convert. is_converted serves WHERE is_converted = true/false.
CREATE INDEX leads_converted_to_client_id_idx ON leads (converted_to_client_id)
    WHERE converted_to_client_id IS NOT NULL;
CREATE INDEX leads_is_converted_idx ON leads (is_converted);

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

-- step: cleanup: restore the user triggers, drop the work tables and functions
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT * FROM jsonb_to_recordset(current_setting('aicrm.m001_triggers')::jsonb)
            AS x ("table" text, "trigger" text, mode text)
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE %s TRIGGER %I', t."table",
                       CASE t.mode WHEN 'A' THEN 'ALWAYS' WHEN 'R' THEN 'REPLICA' ELSE '' END,
                       t."trigger");
    END LOOP;
END
$$;
DROP FUNCTION migration_001_lost_claims(uuid[], uuid[]),
    migration_001_client_values(uuid[]), migration_001_resolve(uuid[]),
    migration_001_find_orphans(uuid[], uuid[], uuid[]);
DROP TABLE migration_001_work, migration_001_orphans, migration_001_seen,
    migration_001_snapshot, migration_001_lost, migration_001_values, migration_001_both;
-- Deferrable constraints were made immediate at the start (pending deferred events
-- forbid ALTER TABLE); the initially deferred ones get their default mode back.
DO $$
DECLARE
    deferred text;
BEGIN
    SELECT string_agg(format('%I.%I', n.nspname, k.conname), ', ') INTO deferred
    FROM pg_constraint AS k JOIN pg_namespace AS n ON n.oid = k.connamespace
    WHERE k.condeferrable AND k.condeferred;
    IF deferred IS NOT NULL THEN
        EXECUTE 'SET CONSTRAINTS ' || deferred || ' DEFERRED';
    END IF;
END
$$;
