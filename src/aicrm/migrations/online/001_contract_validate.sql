-- Online migration 001, phase "contract", part 2: validate the key and the CHECKs.
-- VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE: reads and writes go on while it
-- scans. One statement per transaction; validating a valid constraint is a no-op.

-- step: validate the one-way foreign key
ALTER TABLE leads VALIDATE CONSTRAINT leads_converted_to_client_id_fkey;

-- step: validate the conversion CHECK
ALTER TABLE leads VALIDATE CONSTRAINT leads_conversion_consistent;

-- step: validate the contacts CHECK
ALTER TABLE contacts VALIDATE CONSTRAINT contacts_one_parent;
