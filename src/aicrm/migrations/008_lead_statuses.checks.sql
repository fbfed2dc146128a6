-- Checks of migration 008 (format: see aicrm/migrate/loader.py; design: docs/custom-statuses.md).

-- name: default_statuses_present
-- kind: verify
-- description: lead_statuses holds aicrm's six statuses with their categories
SELECT d.name || ' missing or not ' || d.category AS wrong
FROM (VALUES ('new', 'open'), ('contacted', 'open'), ('qualified', 'open'),
             ('converted', 'converted'), ('unqualified', 'lost'), ('lost', 'lost'))
     AS d (name, category)
WHERE NOT EXISTS (SELECT 1 FROM lead_statuses s WHERE s.name = d.name AND s.category = d.category);

-- name: lead_status_references_table
-- kind: verify
-- description: leads.status references lead_statuses (no fixed list of statuses)
SELECT 'leads_status_fkey missing' WHERE NOT EXISTS (
    SELECT 1 FROM pg_constraint k
    WHERE k.conrelid = 'leads'::regclass AND k.conname = 'leads_status_fkey' AND k.contype = 'f'
)
UNION ALL
SELECT 'leads_status_known still present' WHERE EXISTS (
    SELECT 1 FROM pg_constraint k
    WHERE k.conrelid = 'leads'::regclass AND k.conname = 'leads_status_known'
);
