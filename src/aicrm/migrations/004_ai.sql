-- Migration 004: AI annotations and lead-scoring models.
--   * aicrm_annotate(): the one way annotators write ai_annotations, merged in SQL so
--     that concurrent annotators never erase each other's keys (docs/lead-scoring.md);
--   * ai_models: trained lead-scoring models (or their fallback priors) with their
--     training window, metrics and feature list; the parameters are plain arrays
--     (an .npz read with allow_pickle=False), never a pickle.

-- step: the annotation merge function
-- ai_annotations holds one entry per annotator:
--   {"<annotator>": {"model": text, "version": text, "produced_at": timestamptz,
--                    "values": {...}, "confidence": number or null}, ...}
-- aicrm_annotate(current, annotator, entry, merge_values) returns current with the
-- annotator's entry replaced by entry, except that entry.values is merged into the
-- values already there when merge_values (the default) — other annotators' entries
-- are never touched. A current value that is not a JSON object is kept under
-- "_previous" rather than lost.
CREATE FUNCTION aicrm_annotate(
    current jsonb, annotator text, entry jsonb, merge_values boolean DEFAULT true
) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT base || jsonb_build_object(annotator,
        CASE WHEN jsonb_typeof(base -> annotator) = 'object' THEN base -> annotator
             ELSE '{}'::jsonb END
        || (entry - 'values')
        || jsonb_build_object('values',
               CASE WHEN merge_values AND jsonb_typeof(base -> annotator -> 'values') = 'object'
                    THEN base -> annotator -> 'values' ELSE '{}'::jsonb END
               || coalesce(entry -> 'values', '{}'::jsonb)))
    FROM (SELECT CASE WHEN current IS NULL THEN '{}'::jsonb
                      WHEN jsonb_typeof(current) = 'object' THEN current
                      ELSE jsonb_build_object('_previous', current) END AS base) AS b
$$;

-- step: the models table
CREATE TABLE ai_models (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('lead_scoring')),
    version text NOT NULL UNIQUE,
    method text NOT NULL CHECK (method IN ('model', 'prior')),
    algorithm text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL DEFAULT aicrm_actor(),
    active boolean NOT NULL DEFAULT false,
    horizon_days integer NOT NULL CHECK (horizon_days > 0),
    -- leads created in [trained_from, trained_to) were the labelled examples, with
    -- their outcomes as known at as_of
    trained_from timestamptz NULL,
    trained_to timestamptz NULL,
    as_of timestamptz NOT NULL,
    n_leads integer NOT NULL,
    n_positive integer NOT NULL,
    n_negative integer NOT NULL,
    metrics jsonb NOT NULL DEFAULT '{}',
    features jsonb NOT NULL DEFAULT '[]',
    params jsonb NOT NULL DEFAULT '{}',
    artifact bytea NULL,
    artifact_format text NULL CHECK (artifact_format IN ('npz')),
    artifact_sha256 text NULL,
    CHECK ((artifact IS NULL) = (artifact_format IS NULL))
);
COMMENT ON TABLE ai_models IS
    'Lead-scoring models trained by aicrm ai train: one active per kind. artifact is a '
    'numpy .npz of plain arrays (loaded with allow_pickle=False), never a pickle.';
CREATE UNIQUE INDEX ai_models_one_active ON ai_models (kind) WHERE active;
