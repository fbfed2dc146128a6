-- Migration 011: each lead's score trend (docs/lead-scoring.md, "The score trend").
--   * lead_score_history keeps (lead, model version, score, scored_at) for each
--     write-back of aicrm ai score that changed the lead's score: a row is added only
--     when the lead has none yet, when the score moved by 0.01 or more since its last
--     row, or when another model scored it; growth is bounded by real changes, not by
--     how often scoring runs. A lead's rows go with it (ON DELETE CASCADE).
--   * grants computed from the catalogue (009's aicrm_grant_readers): SELECT to the
--     roles that read leads (when no row-level security applies to leads: the trend
--     would show hidden rows), INSERT to the roles that may update leads (the scoring
--     write-back).
-- Self-contained: it creates and grants only its own table.

-- step: the table
CREATE TABLE lead_score_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    model_version text NOT NULL CHECK (model_version <> ''),
    score real NOT NULL CHECK (score >= 0 AND score <= 1),
    scored_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE lead_score_history IS
    'Each lead''s score trend: a row per write-back that moved its score by 0.01 or more '
    '(or changed the model).';
-- The table is created empty in this same transaction: nothing to block, and
-- CONCURRENTLY is not allowed inside a transaction.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX lead_score_history_lead_idx ON lead_score_history (lead_id, scored_at, id);

-- step: grants from the catalogue
DO $$
BEGIN
    IF NOT aicrm_row_security(ARRAY['leads']::regclass[]) THEN
        PERFORM aicrm_grant_readers('lead_score_history', ARRAY['leads']::regclass[]);
    END IF;
    PERFORM aicrm_grant_readers('lead_score_history', ARRAY['leads']::regclass[], 'INSERT',
                                'UPDATE');
END $$;
