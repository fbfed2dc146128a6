-- Migration 001 done the naive way: the seed's design note followed literally, in
-- one hand-written transaction, run with
--
--     psql -X -v ON_ERROR_STOP=1 -f bench/naive_001.sql --dbname …
--
-- It is the baseline bench/bench_001.py measures aicrm's 001 against: the same end
-- shape (conversion fields, one-way foreign key, legacy columns and circular keys
-- gone, contacts with exactly one parent, indexes, the two views), none of the care.
-- What it does not do, on purpose: no backup, no integrity report (a lead claimed by
-- two clients gets one of them at random: UPDATE … FROM picks any matching row), no
-- archive of the links it drops, no handling of orphans (the new key or CHECK just
-- fails), no lock_timeout (it queues behind any reader, and everyone queues behind
-- it), and ACCESS EXCLUSIVE on leads from the first statement to COMMIT.

\set ON_ERROR_STOP on

BEGIN;

-- 3. Field addition
ALTER TABLE leads ADD COLUMN converted_to_client_id UUID;
ALTER TABLE leads ADD COLUMN conversion_date TIMESTAMP WITH TIME ZONE;
ALTER TABLE leads ADD COLUMN is_converted BOOLEAN NOT NULL DEFAULT false;

-- 4. Data migration: preserve the existing relationships
UPDATE leads
SET converted_to_client_id = clients.id,
    conversion_date = clients.created_at,
    is_converted = true
FROM clients
WHERE clients.converted_from_lead_id = leads.id;

-- leads converted on their own side only
UPDATE leads
SET converted_to_client_id = clients.id,
    conversion_date = clients.created_at,
    is_converted = true
FROM clients
WHERE clients.id = leads.client_id
  AND leads.converted_to_client_id IS NULL;

-- contacts linked to both: keep the client
UPDATE contacts SET lead_id = NULL WHERE lead_id IS NOT NULL AND client_id IS NOT NULL;

-- 5. Constraint removal (the default names PostgreSQL gave them)
ALTER TABLE clients DROP CONSTRAINT clients_converted_from_lead_id_fkey;
ALTER TABLE leads DROP CONSTRAINT leads_client_id_fkey;
ALTER TABLE leads DROP COLUMN client_id;
ALTER TABLE clients DROP COLUMN converted_from_lead_id;

-- 6. New constraints
ALTER TABLE leads ADD CONSTRAINT leads_converted_to_client_id_fkey
    FOREIGN KEY (converted_to_client_id) REFERENCES clients (id);
ALTER TABLE contacts ADD CONSTRAINT contacts_one_parent
    CHECK ((lead_id IS NULL) <> (client_id IS NULL));

-- 7. Indexes
CREATE INDEX idx_leads_converted_to_client_id ON leads (converted_to_client_id);
CREATE INDEX idx_leads_is_converted ON leads (is_converted);
CREATE INDEX idx_leads_conversion_date ON leads (conversion_date);

-- 8. Views
CREATE VIEW lead_conversion_summary AS
SELECT source,
       COUNT(*) AS total_leads,
       COUNT(*) FILTER (WHERE is_converted) AS converted_leads,
       COUNT(*) FILTER (WHERE NOT is_converted) AS active_leads,
       ROUND(100.0 * COUNT(*) FILTER (WHERE is_converted) / COUNT(*), 2) AS conversion_rate
FROM leads
GROUP BY source;

CREATE VIEW client_lead_history AS
SELECT c.id AS client_id, c.name AS client_name, l.id AS lead_id, l.email AS lead_email,
       l.source AS lead_source, l.created_at AS lead_created_at, l.conversion_date
FROM clients c
JOIN leads l ON l.converted_to_client_id = c.id;

-- 9. Verification
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
               WHERE conname IN ('clients_converted_from_lead_id_fkey', 'leads_client_id_fkey')) THEN
        RAISE EXCEPTION 'circular foreign keys still present';
    END IF;
END
$$;

COMMIT;
