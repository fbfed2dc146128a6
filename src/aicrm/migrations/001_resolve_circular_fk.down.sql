-- Migration 001, the way back to 000 without the backup (docs/migration-001.md).
--
-- Rebuilds leads.client_id and clients.converted_from_lead_id from the conversion
-- fields, then applies the legacy values 001 kept (migration_001_link_archive and
-- migration_001_legacy_values: at most one per table, row and column), puts back the
-- contacts moved to migration_001_orphan_contacts and their lead links, and recreates
-- the circular foreign keys and the other constraints and indexes on those columns
-- under their recorded names. User triggers do not fire and keep their modes; no
-- updated_at changes. The runner takes the locks declared by 001 first.

-- step: prepare: disable the enabled user triggers
SET CONSTRAINTS ALL IMMEDIATE;  -- pending deferred events would forbid ALTER TABLE
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

-- step: drop the views and 001's constraints
DROP VIEW IF EXISTS client_lead_history;
DROP VIEW IF EXISTS lead_conversion_summary;
ALTER TABLE contacts DROP CONSTRAINT IF EXISTS contacts_one_parent;
ALTER TABLE leads
    DROP CONSTRAINT IF EXISTS leads_conversion_consistent,
    DROP CONSTRAINT IF EXISTS leads_converted_to_client_id_fkey;

-- step: the legacy values to restore, one per table, row and column
CREATE UNLOGGED TABLE migration_001_work AS
SELECT table_name, column_name, row_id, referenced_id AS legacy_value
FROM migration_001_link_archive
UNION ALL
SELECT table_name, column_name, row_id, legacy_value
FROM migration_001_legacy_values;
ALTER TABLE migration_001_work ADD PRIMARY KEY (table_name, column_name, row_id);

-- step: re-add leads.client_id and clients.converted_from_lead_id
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT expected.tbl, expected.col, coalesce(o.definition, 'uuid') AS type
        FROM (VALUES ('leads', 'client_id'), ('clients', 'converted_from_lead_id'))
            AS expected (tbl, col)
        LEFT JOIN migration_001_legacy_objects AS o
               ON o.table_name = expected.tbl AND o.column_name = expected.col
              AND o.kind = 'column'
    LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN %I %s NULL', col.tbl, col.col, col.type);
    END LOOP;
END
$$;

-- step: rebuild leads.client_id
UPDATE leads SET client_id = converted_to_client_id WHERE converted_to_client_id IS NOT NULL;
UPDATE leads AS l SET client_id = v.legacy_value
FROM migration_001_work AS v
WHERE v.table_name = 'leads' AND v.column_name = 'client_id' AND v.row_id = l.id;

-- step: rebuild clients.converted_from_lead_id
-- A client names the lead converted to it when there is exactly one; 001 kept the
-- legacy value wherever that is not what the client named.
UPDATE clients AS c SET converted_from_lead_id = one.lead_id
FROM (
    SELECT converted_to_client_id AS client_id, (array_agg(id))[1] AS lead_id
    FROM leads
    WHERE converted_to_client_id IS NOT NULL
    GROUP BY converted_to_client_id
    HAVING count(*) = 1
) AS one
WHERE c.id = one.client_id;
UPDATE clients AS c SET converted_from_lead_id = v.legacy_value
FROM migration_001_work AS v
WHERE v.table_name = 'clients' AND v.column_name = 'converted_from_lead_id' AND v.row_id = c.id;

-- step: put back the moved contacts and the contacts' legacy links
DO $$
DECLARE
    cols text;
    k record;
    readd jsonb := '[]';
BEGIN
    -- The moved contacts, every column the two tables share (not generated ones).
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO cols
    FROM pg_attribute AS a
    WHERE a.attrelid = 'contacts'::regclass AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attgenerated = ''
      AND EXISTS (SELECT 1 FROM pg_attribute AS o
                  WHERE o.attrelid = 'migration_001_orphan_contacts'::regclass
                    AND o.attname = a.attname AND NOT o.attisdropped);
    EXECUTE format('INSERT INTO contacts (%s) OVERRIDING SYSTEM VALUE SELECT %s '
                   'FROM migration_001_orphan_contacts', cols, cols);

    -- A restored orphan reference names no row: its column's foreign keys (kept by
    -- 001) cannot take it back, so they come back NOT VALID, as such data was. (The
    -- list is read in full first: no open scan of leads or clients while altering.)
    SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object('name', con.conname,
                                                          'def', pg_get_constraintdef(con.oid))),
                    '[]')
    INTO readd
    FROM pg_constraint AS con
    JOIN pg_attribute AS a ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey)
    WHERE con.contype = 'f' AND con.conrelid = 'contacts'::regclass
      AND EXISTS (
          SELECT 1 FROM migration_001_work AS v
          WHERE v.table_name = 'contacts' AND v.column_name = a.attname
            AND v.legacy_value IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM leads AS l
                            WHERE a.attname = 'lead_id' AND l.id = v.legacy_value)
            AND NOT EXISTS (SELECT 1 FROM clients AS c
                            WHERE a.attname = 'client_id' AND c.id = v.legacy_value));
    FOR k IN SELECT * FROM jsonb_to_recordset(readd) AS x (name text, def text) LOOP
        EXECUTE format('ALTER TABLE contacts DROP CONSTRAINT %I', k.name);
    END LOOP;

    UPDATE contacts AS c SET lead_id = v.legacy_value
    FROM migration_001_work AS v
    WHERE v.table_name = 'contacts' AND v.column_name = 'lead_id' AND v.row_id = c.id;
    UPDATE contacts AS c SET client_id = v.legacy_value
    FROM migration_001_work AS v
    WHERE v.table_name = 'contacts' AND v.column_name = 'client_id' AND v.row_id = c.id;

    FOR k IN SELECT * FROM jsonb_to_recordset(readd) AS x (name text, def text) LOOP
        EXECUTE format('ALTER TABLE contacts ADD CONSTRAINT %I %s', k.name,
                       CASE WHEN k.def LIKE '% NOT VALID' THEN k.def ELSE k.def || ' NOT VALID' END);
    END LOOP;
END
$$;

-- step: recreate the circular foreign keys and the columns' other constraints and indexes
DO $$
DECLARE
    o record;
    def text;
BEGIN
    FOR o IN
        SELECT * FROM migration_001_legacy_objects
        WHERE kind IN ('constraint', 'index')
        ORDER BY kind, table_name, name  -- constraints (and their indexes) first
    LOOP
        IF o.kind = 'index' THEN
            EXECUTE o.definition;
            CONTINUE;
        END IF;
        def := o.definition;
        -- Restored orphan references (--archive-orphans) name no row: such a key was
        -- NOT VALID or violated before 001, and comes back NOT VALID.
        IF def LIKE 'FOREIGN KEY%' AND def NOT LIKE '% NOT VALID' AND EXISTS (
            SELECT 1 FROM migration_001_work AS v
            WHERE v.table_name = o.table_name AND v.column_name = o.column_name
              AND v.legacy_value IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM leads AS l
                              WHERE o.table_name = 'clients' AND l.id = v.legacy_value)
              AND NOT EXISTS (SELECT 1 FROM clients AS c
                              WHERE o.table_name = 'leads' AND c.id = v.legacy_value))
        THEN
            def := def || ' NOT VALID';
        END IF;
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', o.table_name, o.name, def);
    END LOOP;
END
$$;

-- step: drop the conversion fields (their indexes go with them) and 001's tables
ALTER TABLE leads
    DROP COLUMN converted_to_client_id,
    DROP COLUMN conversion_date,
    DROP COLUMN is_converted;
DROP TABLE migration_001_work;
DROP TABLE migration_001_link_archive;
DROP TABLE migration_001_orphan_contacts;
DROP TABLE migration_001_legacy_values;
DROP TABLE migration_001_legacy_objects;

-- step: restore the user triggers
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
    PERFORM set_config('aicrm.m001_triggers', '', true);
END
$$;
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
