-- Back to 009: the reconstructed rows are deleted, 002's lead_status_periods comes back.
-- aicrm:lock leads

-- step: 002's lead_status_periods
CREATE OR REPLACE VIEW lead_status_periods AS
WITH recorded AS (
    SELECT h.row_id AS lead_id, h.changed_at, h.id AS seq,
           CASE h.operation WHEN 'insert' THEN h.changes ->> 'status'
                ELSE h.changes -> 'status' ->> 1 END AS status
    FROM crm_history h
    WHERE h.table_name = 'leads'
      AND (h.operation = 'insert' OR (h.operation = 'update' AND h.changes ? 'status'))
), initial AS (
    SELECT l.id AS lead_id, l.created_at AS changed_at, 0::bigint AS seq,
           coalesce((
               SELECT h.changes -> 'status' ->> 0 FROM crm_history h
               WHERE h.table_name = 'leads' AND h.row_id = l.id AND h.operation = 'update'
                 AND h.changes ? 'status'
               ORDER BY h.changed_at, h.id LIMIT 1
           ), l.status) AS status
    FROM leads l
    WHERE NOT EXISTS (
        SELECT 1 FROM crm_history h
        WHERE h.table_name = 'leads' AND h.row_id = l.id AND h.operation = 'insert'
    )
), periods AS (
    SELECT * FROM recorded UNION ALL SELECT * FROM initial
)
SELECT p.lead_id, p.status, p.changed_at AS entered_at,
       lead(p.changed_at) OVER w AS left_at,
       extract(epoch FROM coalesce(lead(p.changed_at) OVER w, now()) - p.changed_at) / 86400.0
           AS days_in_status
FROM periods p
JOIN leads l ON l.id = p.lead_id
WINDOW w AS (PARTITION BY p.lead_id ORDER BY p.changed_at, p.seq);

-- CREATE OR REPLACE VIEW resets the view's options: 009's security_invoker again, so
-- row-level security on leads still holds through it.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 150000 THEN
        ALTER VIEW lead_status_periods SET (security_invoker = true);
    END IF;
END $$;

-- step: delete the reconstructed rows and the column that marks them
DROP FUNCTION aicrm_reconstruct_lead_history();
DELETE FROM crm_history WHERE reconstructed;
ALTER TABLE crm_history DROP COLUMN reconstructed;
