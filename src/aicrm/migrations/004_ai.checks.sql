-- Checks of migration 004 (format: see aicrm/migrate/loader.py).

-- name: annotate_function_merges
-- kind: verify
-- description: aicrm_annotate merges an annotator's entry without erasing the others
SELECT 'aicrm_annotate does not merge as documented'
WHERE aicrm_annotate(
          aicrm_annotate('{"a": {"values": {"x": 1}}}'::jsonb, 'b', '{"values": {"y": 2}}'::jsonb),
          'a', '{"version": "2", "values": {"z": 3}}'::jsonb)
      IS DISTINCT FROM
      '{"a": {"version": "2", "values": {"x": 1, "z": 3}}, "b": {"values": {"y": 2}}}'::jsonb;

-- name: one_active_model_per_kind
-- kind: verify
-- description: at most one active model of each kind
SELECT kind FROM ai_models WHERE active GROUP BY kind HAVING count(*) > 1;
