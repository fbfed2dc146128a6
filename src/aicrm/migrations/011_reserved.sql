-- Migration 011: reserved. This branch (h-act) numbers its migration 012, after the
-- 011 of another branch (h-aisc) that is merged before it; this empty placeholder only
-- keeps the numbering without a gap (the loader refuses gaps) until then. At the merge,
-- delete this file (and its symlink in migrations/) in favour of the real 011.

-- step: nothing
SELECT 1;
