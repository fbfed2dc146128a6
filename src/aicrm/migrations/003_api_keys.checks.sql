-- name: api_keys_table
-- kind: verify
-- description: the api_keys table exists
SELECT 'api_keys missing' WHERE to_regclass('api_keys') IS NULL;
