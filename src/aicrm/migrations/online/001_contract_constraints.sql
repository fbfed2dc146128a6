-- Online migration 001, phase "contract", part 1: the key and the CHECKs, NOT VALID.
-- Each is checked for every row written from now on at once; the next part
-- validates the existing rows without blocking writes. Each step is one short
-- transaction under a short lock_timeout (retried with backoff), and skipped when
-- the constraint already exists (a resumed run).

-- step: the one-way foreign key, NOT VALID
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'leads'::regclass
                   AND conname = 'leads_converted_to_client_id_fkey') THEN
        ALTER TABLE leads
            ADD CONSTRAINT leads_converted_to_client_id_fkey
                FOREIGN KEY (converted_to_client_id) REFERENCES clients (id) NOT VALID;
    END IF;
END
$$;

-- step: the conversion CHECK, NOT VALID
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'leads'::regclass
                   AND conname = 'leads_conversion_consistent') THEN
        ALTER TABLE leads
            ADD CONSTRAINT leads_conversion_consistent CHECK (
                is_converted = (converted_to_client_id IS NOT NULL)
                AND is_converted = (conversion_date IS NOT NULL)
            ) NOT VALID;
    END IF;
END
$$;

-- step: the contacts CHECK, NOT VALID
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'contacts'::regclass
                   AND conname = 'contacts_one_parent') THEN
        ALTER TABLE contacts
            ADD CONSTRAINT contacts_one_parent CHECK (num_nonnulls(lead_id, client_id) = 1) NOT VALID;
    END IF;
END
$$;
COMMENT ON CONSTRAINT contacts_one_parent ON contacts IS
    'A contact is linked to either leads OR clients (migration 001).';
