-- Checks of migration 011 (format: see aicrm/migrate/loader.py).

-- name: score_history_in_place
-- kind: verify
-- description: lead_score_history exists with its lead index
SELECT 'lead_score_history missing'
WHERE to_regclass('lead_score_history') IS NULL
UNION ALL
SELECT 'lead_score_history_lead_idx missing'
WHERE to_regclass('lead_score_history_lead_idx') IS NULL;
