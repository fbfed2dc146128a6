-- Checks of migration 010 (numbered 008 on its branch; format: see aicrm/migrate/loader.py).

-- name: reconstructed_history_in_place
-- kind: verify
-- description: crm_history has the reconstructed column and aicrm_reconstruct_lead_history() exists
SELECT 'crm_history.reconstructed missing'
WHERE NOT EXISTS (SELECT 1 FROM pg_attribute
                  WHERE attrelid = 'crm_history'::regclass AND attname = 'reconstructed'
                    AND NOT attisdropped)
UNION ALL
SELECT 'aicrm_reconstruct_lead_history() missing'
WHERE to_regprocedure('aicrm_reconstruct_lead_history()') IS NULL;
