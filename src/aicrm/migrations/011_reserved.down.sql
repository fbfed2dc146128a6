-- Back to 010: migration 011 is an empty placeholder; nothing to undo.

-- step: nothing
SELECT 1;
