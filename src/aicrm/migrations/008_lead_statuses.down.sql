-- Back to 007: 002's fixed list of statuses. Refused while a lead has a status
-- outside it: remove each custom status first ('aicrm statuses remove NAME --into
-- OTHER' moves its leads to another status), then downgrade.
-- aicrm:lock leads

-- step: refuse while leads have custom statuses
DO $$
DECLARE custom text;
BEGIN
    SELECT string_agg(DISTINCT status, ', ' ORDER BY status) INTO custom FROM leads
    WHERE status NOT IN ('new', 'contacted', 'qualified', 'unqualified', 'lost', 'converted');
    IF custom IS NOT NULL THEN
        RAISE EXCEPTION 'leads have custom statuses (%) that 007 cannot hold; move their '
            'leads to a default status first with ''aicrm statuses remove NAME --into OTHER'' '
            'for each, then downgrade', custom;
    END IF;
END $$;

-- step: the fixed list again, and no statuses table
ALTER TABLE leads DROP CONSTRAINT leads_status_fkey;
-- One transaction holding ACCESS EXCLUSIVE on leads (the down file's own lock):
-- NOT VALID and a VALIDATE in it would scan the same rows under the same lock.
-- squawk-ignore constraint-missing-not-valid
ALTER TABLE leads ADD CONSTRAINT leads_status_known
    CHECK (status IN ('new', 'contacted', 'qualified', 'unqualified', 'lost', 'converted'));
DROP TABLE lead_statuses;
