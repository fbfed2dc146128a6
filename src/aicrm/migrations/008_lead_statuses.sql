-- Migration 008: lead statuses become data (docs/custom-statuses.md).
--   * lead_statuses: every status a lead can have, with its category (open,
--     converted, lost) and its position in the funnel; seeded with aicrm's six
--     defaults and with every status found in leads (each unknown one as open,
--     after 'qualified', in alphabetical order);
--   * leads.status references lead_statuses instead of 002's fixed CHECK
--     leads_status_known: adding a status is a row ('aicrm statuses add'), not a
--     migration. 'converted' stays the one status of category converted, set by
--     conversion only (002's CHECK leads_status_converted_iff_converted).
--   * open leads whose custom status 002's fixed list refused were carried through
--     002 by the runner (aicrm.migrate.status_map: their statuses kept in the
--     temporary table aicrm_status_carry, the leads set to 'new' until here, in the
--     same transaction); they get their statuses back here, unrecorded by the
--     history (nothing changed for them) and with user triggers quiet.
-- aicrm:lock leads

-- step: the statuses table, seeded with the defaults
CREATE TABLE lead_statuses (
    name text PRIMARY KEY,
    category text NOT NULL CHECK (category IN ('open', 'converted', 'lost')),
    -- the funnel's order; DEFERRABLE so that one UPDATE can renumber them all.
    -- A handful of statuses, renumbered in tens: integer is ample.
    -- squawk-ignore prefer-bigint-over-int
    position integer NOT NULL CONSTRAINT lead_statuses_position_key UNIQUE DEFERRABLE,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT lead_statuses_converted_is_converted
        CHECK ((name = 'converted') = (category = 'converted'))
);
COMMENT ON TABLE lead_statuses IS
    'Lead statuses (aicrm statuses list/add): category open, converted (only ''converted'', '
    'set by conversion) or lost; position orders the funnel.';
INSERT INTO lead_statuses (name, category, position) VALUES
    ('new', 'open', 10), ('contacted', 'open', 20), ('qualified', 'open', 30),
    ('converted', 'converted', 40), ('unqualified', 'lost', 50), ('lost', 'lost', 60);

-- step: carried custom statuses back on their leads (history and user triggers quiet)
ALTER TABLE leads DROP CONSTRAINT leads_status_known;
CREATE TEMP TABLE aicrm_008_quieted ON COMMIT DROP AS
SELECT t.tgname AS trigger_name, t.tgenabled AS mode
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = 'leads'
  AND NOT t.tgisinternal AND t.tgenabled <> 'D'
  AND to_regclass('pg_temp.aicrm_status_carry') IS NOT NULL;
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM aicrm_008_quieted LOOP
        EXECUTE format('ALTER TABLE leads DISABLE TRIGGER %I', r.trigger_name);
    END LOOP;
    IF to_regclass('pg_temp.aicrm_status_carry') IS NOT NULL THEN
        EXECUTE 'UPDATE leads l SET status = c.status FROM pg_temp.aicrm_status_carry c '
                'WHERE l.id = c.lead_id';
    END IF;
    FOR r IN SELECT * FROM aicrm_008_quieted LOOP
        EXECUTE format(
            'ALTER TABLE leads ENABLE %s TRIGGER %I',
            CASE r.mode WHEN 'A' THEN 'ALWAYS' WHEN 'R' THEN 'REPLICA' ELSE '' END,
            r.trigger_name
        );
    END LOOP;
END $$;

-- step: every other status found in leads, as open, after 'qualified'
UPDATE lead_statuses SET position = position + 1000 WHERE category <> 'open'
   OR name NOT IN ('new', 'contacted', 'qualified');
INSERT INTO lead_statuses (name, category, position)
SELECT found.status, 'open', 30 + row_number() OVER (ORDER BY found.status)
FROM (SELECT DISTINCT status FROM leads) AS found
WHERE NOT EXISTS (SELECT 1 FROM lead_statuses s WHERE s.name = found.status);
UPDATE lead_statuses s SET position = r.n * 10
FROM (SELECT name, row_number() OVER (ORDER BY position) AS n FROM lead_statuses) AS r
WHERE r.name = s.name;

-- step: leads.status references lead_statuses instead of 002's fixed list
-- The whole migration is one transaction holding ACCESS EXCLUSIVE on leads, taken up
-- front (aicrm:lock above): NOT VALID and a VALIDATE in that same transaction would
-- scan the same rows under the same lock.
-- squawk-ignore constraint-missing-not-valid, adding-foreign-key-constraint
ALTER TABLE leads ADD CONSTRAINT leads_status_fkey
    FOREIGN KEY (status) REFERENCES lead_statuses (name);
