-- Checks of migration 012 (format: see aicrm/migrate/loader.py; design:
-- docs/activities-and-owners.md).

-- name: activities_owners_in_place
-- kind: verify
-- description: users, activities and assignment_rules exist; leads and clients have owner_id, api_keys user_id
SELECT t.name || ' missing' FROM (VALUES ('users'), ('activities'), ('assignment_rules')) AS t (name)
WHERE to_regclass(t.name) IS NULL
UNION ALL
SELECT c.rel || '.' || c.col || ' missing'
FROM (VALUES ('leads', 'owner_id'), ('clients', 'owner_id'), ('api_keys', 'user_id')) AS c (rel, col)
WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = to_regclass(c.rel) AND a.attname = c.col
                    AND NOT a.attisdropped);

-- name: activity_triggers_present
-- kind: verify
-- description: a conversion moves the lead's activities (trigger on leads), owner's rights with a pinned search_path, PUBLIC may not execute it
SELECT 'aicrm_conversion_moves_activities missing' WHERE NOT EXISTS (
    SELECT 1 FROM pg_trigger g
    WHERE g.tgrelid = 'leads'::regclass AND g.tgname = 'aicrm_conversion_moves_activities'
      AND g.tgenabled <> 'D'
)
UNION ALL
SELECT p.proname || ' is not SECURITY DEFINER with a pinned search_path, or PUBLIC may execute it'
FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace
  AND p.proname = 'aicrm_conversion_moves_activities'
  AND (NOT p.prosecdef
       OR NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c
                      WHERE c LIKE 'search_path=pg_catalog, %, pg_temp')
       OR has_function_privilege('public', p.oid, 'EXECUTE'));

-- name: activity_belongs_to_one_record
-- kind: verify
-- description: every activity is attached to exactly one lead, client or contact
SELECT id::text FROM activities WHERE num_nonnulls(lead_id, client_id, contact_id) <> 1;
