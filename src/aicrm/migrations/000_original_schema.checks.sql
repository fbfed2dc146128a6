-- Checks of migration 000 (format: see aicrm/migrate/loader.py).

-- name: original_schema_present
-- kind: baseline
-- description: the original CRM tables and key columns exist (rows = what is missing)
SELECT expected.table_name || '.' || expected.column_name AS missing
FROM (VALUES
    ('leads', 'id'), ('leads', 'client_id'), ('leads', 'email'), ('leads', 'status'),
    ('leads', 'created_at'),
    ('clients', 'id'), ('clients', 'converted_from_lead_id'), ('clients', 'name'),
    ('clients', 'created_at'),
    ('contacts', 'id'), ('contacts', 'lead_id'), ('contacts', 'client_id'),
    ('contacts', 'created_at')
) AS expected (table_name, column_name)
WHERE NOT EXISTS (
    SELECT 1 FROM information_schema.columns AS c
    WHERE c.table_schema = current_schema()
      AND c.table_name = expected.table_name
      AND c.column_name = expected.column_name
);

-- name: tables_exist
-- kind: verify
-- description: leads, clients and contacts exist
SELECT expected.name AS missing_table
FROM (VALUES ('leads'), ('clients'), ('contacts')) AS expected (name)
WHERE to_regclass(expected.name) IS NULL;
