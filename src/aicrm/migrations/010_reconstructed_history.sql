-- Migration 010: the lead
-- history that the data of an upgraded database proves.
--   * crm_history.reconstructed marks rows written from the data rather than recorded
--     as they happened (actor 'aicrm:reconstructed');
--   * every lead without an insert row gets one at its created_at, holding only what
--     the data proves at that moment: its id and created_at (not its status, source or
--     attributes, which may have been edited since);
--   * every converted lead whose conversion is not in the history gets an update row
--     at its conversion_date: is_converted, conversion_date, converted_to_client_id
--     (not its status: the status before the conversion is not known);
--   * lead_status_periods reads reconstructed insert rows as absent (they carry no
--     status), so its periods are 002's.
-- Lead scoring reads a status at a moment only from the history, so a lead whose
-- status history is missing has an unknown status at creation (docs/lead-scoring.md).
-- aicrm:lock leads

-- step: crm_history.reconstructed
ALTER TABLE crm_history ADD COLUMN reconstructed boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN crm_history.reconstructed IS
    'true: written by aicrm_reconstruct_lead_history() from the data (what it proves), '
    'not recorded when it happened';

-- step: aicrm_reconstruct_lead_history()
-- Idempotent: a lead that has an insert row (recorded or reconstructed) gets no
-- other; a conversion already in the history (a row changing is_converted) is not
-- written again. Returns the number of rows written.
CREATE FUNCTION aicrm_reconstruct_lead_history() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    created bigint;
    converted bigint;
BEGIN
    INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, changes,
                             reconstructed)
    SELECT 'leads', l.id, 'insert', l.created_at, 'aicrm:reconstructed',
           jsonb_build_object('id', l.id, 'created_at', l.created_at), true
    FROM leads l
    WHERE NOT EXISTS (SELECT 1 FROM crm_history h
                      WHERE h.table_name = 'leads' AND h.row_id = l.id
                        AND h.operation = 'insert')
    ORDER BY l.id;
    GET DIAGNOSTICS created = ROW_COUNT;
    INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, changes,
                             reconstructed)
    SELECT 'leads', l.id, 'update', l.conversion_date, 'aicrm:reconstructed',
           jsonb_build_object(
               'is_converted', jsonb_build_array(false, true),
               'conversion_date', jsonb_build_array(NULL, to_jsonb(l.conversion_date)),
               'converted_to_client_id', jsonb_build_array(NULL, l.converted_to_client_id)),
           true
    FROM leads l
    WHERE l.is_converted AND l.conversion_date IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM crm_history h
                      WHERE h.table_name = 'leads' AND h.row_id = l.id
                        AND h.operation = 'update' AND h.changes ? 'is_converted')
    ORDER BY l.id;
    GET DIAGNOSTICS converted = ROW_COUNT;
    RETURN created + converted;
END $$;

-- step: lead_status_periods leaves reconstructed insert rows out
CREATE OR REPLACE VIEW lead_status_periods AS
WITH recorded AS (
    SELECT h.row_id AS lead_id, h.changed_at, h.id AS seq,
           CASE h.operation WHEN 'insert' THEN h.changes ->> 'status'
                ELSE h.changes -> 'status' ->> 1 END AS status
    FROM crm_history h
    WHERE h.table_name = 'leads'
      AND ((h.operation = 'insert' AND NOT h.reconstructed)
           OR (h.operation = 'update' AND h.changes ? 'status'))
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
          AND NOT h.reconstructed
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

-- step: write the history the leads' data proves
SELECT aicrm_reconstruct_lead_history();
