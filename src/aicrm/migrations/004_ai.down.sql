-- Back to 003: drops the models table and the annotation function. Annotations
-- already written stay in the ai_annotations columns (they are plain JSON).

-- step: drop the models table and the annotation function
DROP TABLE ai_models;
DROP FUNCTION aicrm_annotate(jsonb, text, jsonb, boolean);
