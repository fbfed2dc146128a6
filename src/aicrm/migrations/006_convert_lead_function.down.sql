-- Back to 005: drops the conversion function. aicrm before 006 converts leads with
-- its own statements, so nothing else depends on it.

-- step: drop the conversion function
DROP FUNCTION aicrm_convert_lead(uuid, uuid, boolean, boolean, text);
