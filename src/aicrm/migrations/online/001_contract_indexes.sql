-- Online migration 001, phase "contract", part 3: the last index, CONCURRENTLY.
-- (leads_converted_to_client_id_idx was built in expand: the backfill uses it.) An
-- invalid index of the same name, left by an interrupted run, is dropped first.

-- step: index is_converted (CONCURRENTLY)
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_is_converted_idx ON leads (is_converted);
