-- Checks of migration 006 (format: see aicrm/migrate/loader.py).

-- name: convert_lead_function_present
-- kind: verify
-- description: aicrm_convert_lead(uuid, uuid, boolean, boolean, text) exists with its result columns
SELECT 'aicrm_convert_lead missing or with other result columns'
WHERE to_regprocedure('aicrm_convert_lead(uuid, uuid, boolean, boolean, text)') IS NULL
   OR (SELECT array_to_string(p.proargnames[6:10], ',') FROM pg_proc p
       WHERE p.oid = to_regprocedure('aicrm_convert_lead(uuid, uuid, boolean, boolean, text)'))
      IS DISTINCT FROM 'client_id,conversion_date,created_client,already_converted,contacts_moved';

