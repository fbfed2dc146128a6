-- Migration 006: a lead's conversion as one function, aicrm_convert_lead().
--   The conversion that convert_lead() did in nine statements from Python runs in the
--   server instead, in the caller's transaction: one round trip per conversion, and
--   the same rules for every client (aicrm, psql, another application). Its errors
--   carry aicrm's own SQLSTATEs, which aicrm.db.errors translates:
--     AC002  no lead (or target client) has that id                  -> NotFound
--     AC003  the lead was converted already, into another client     -> AlreadyConverted
--     AC004  the lead's email belongs to other leads or contacts     -> DuplicateFound
--   (AC001, a converted lead is read-only, is migration 002's.) The history triggers
--   record the changes as before, as made by the actor given (or aicrm.actor).

-- step: the conversion function
-- Deliberately no SET clause: it would undo the set_config('aicrm.actor', …, true)
-- at the function's exit, before the history triggers of the caller's later
-- statements could see it.
CREATE FUNCTION aicrm_convert_lead(
    lead_id uuid,
    target_client_id uuid DEFAULT NULL,
    overwrite boolean DEFAULT false,
    allow_duplicate boolean DEFAULT false,
    actor text DEFAULT NULL,
    OUT client_id uuid,
    OUT conversion_date timestamptz,
    OUT created_client boolean,
    OUT already_converted boolean,
    OUT contacts_moved integer
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lead_key ALIAS FOR $1;
    target ALIAS FOR $2;
    lead_row leads%ROWTYPE;
    client_key uuid;
    matches json;
    match_count bigint;
    named text;
BEGIN
    IF lead_key IS NULL THEN
        RAISE EXCEPTION 'a lead id is required to convert a lead'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF actor IS NOT NULL THEN  -- an assignment, not PERFORM: no query of its own
        actor := set_config('aicrm.actor', actor, true);
    END IF;

    -- The lead's row lock comes first: concurrent conversions of one lead queue here,
    -- and each one after the first finds it converted.
    SELECT * INTO lead_row FROM leads l WHERE l.id = lead_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'No lead has id %.', lead_key
            USING ERRCODE = 'AC002', HINT = 'Check the id, e.g. with aicrm leads list.';
    END IF;

    -- Idempotent: converted already, the existing result, and nothing written.
    IF lead_row.is_converted THEN
        IF target IS NOT NULL AND target <> lead_row.converted_to_client_id THEN
            RAISE EXCEPTION 'Lead % was already converted, to client % on %; a conversion is '
                'permanent and cannot be redone into another client.',
                lead_row.id, lead_row.converted_to_client_id,
                to_char(lead_row.conversion_date, 'YYYY-MM-DD')
                USING ERRCODE = 'AC003',
                      DETAIL = json_build_object('conflicting', to_json(lead_row))::text,
                      HINT = 'Conversion is permanent; there is no un-convert.';
        END IF;
        client_id := lead_row.converted_to_client_id;
        conversion_date := lead_row.conversion_date;
        created_client := false;
        already_converted := true;
        contacts_moved := 0;
        RETURN;
    END IF;

    -- Duplicates, before any write: other leads or contacts with the same email,
    -- ignoring case. The advisory lock is the one every writer of that email takes.
    IF NOT allow_duplicate AND coalesce(lead_row.email, '') <> '' THEN
        PERFORM pg_advisory_xact_lock(hashtext('aicrm:email:' || lower(lead_row.email)));
        IF EXISTS (SELECT 1 FROM leads x
                   WHERE lower(x.email) = lower(lead_row.email) AND x.id <> lead_key)
           OR EXISTS (SELECT 1 FROM contacts c
                      WHERE lower(c.email) = lower(lead_row.email) AND c.id <> lead_key
                        AND (c.lead_id IS NULL OR c.lead_id <> lead_key)) THEN
            -- All of them, for the message (the first five) and the error's details.
            SELECT json_agg(json_build_object('kind', m.kind, 'id', m.id, 'email', m.email,
                                              'name', m.name) ORDER BY m.kind, m.id),
                   count(*),
                   string_agg(format('%s %s (%s)', m.kind, m.id, m.name), ', '
                              ORDER BY m.kind, m.id) FILTER (WHERE m.n <= 5)
            INTO matches, match_count, named
            FROM (
                SELECT f.*, row_number() OVER (ORDER BY f.kind, f.id) AS n
                FROM (
                    SELECT 'lead' AS kind, x.id, x.email,
                           coalesce(nullif(concat_ws(' ', x.first_name, x.last_name), ''),
                                    x.company_name, x.email) AS name
                    FROM leads x
                    WHERE lower(x.email) = lower(lead_row.email) AND x.id <> lead_key
                    UNION ALL
                    SELECT 'contact', c.id, c.email,
                           coalesce(nullif(concat_ws(' ', c.first_name, c.last_name), ''),
                                    c.email)
                    FROM contacts c
                    WHERE lower(c.email) = lower(lead_row.email) AND c.id <> lead_key
                      AND (c.lead_id IS NULL OR c.lead_id <> lead_key)
                ) f
            ) m;
            RAISE EXCEPTION USING
                MESSAGE = format('The email %s already belongs to %s%s. Merge them (''aicrm '
                                 'leads merge''), or allow the duplicate explicitly.',
                                 lead_row.email, named,
                                 CASE WHEN match_count > 5
                                      THEN format(' and %s more', match_count - 5) ELSE '' END),
                ERRCODE = 'AC004',
                DETAIL = json_build_object('conflicting', matches)::text,
                HINT = 'Pass allow_duplicate => true to convert it all the same.';
        END IF;
    END IF;

    IF target IS NULL THEN
        -- A new client from the lead (the field mapping of docs/crm-core.md).
        client_key := gen_random_uuid();
        INSERT INTO clients (id, name, industry, ai_score, ai_summary, ai_annotations, attributes)
        VALUES (client_key,
                coalesce(nullif(btrim(lead_row.company_name), ''),
                         nullif(btrim(concat_ws(' ', lead_row.first_name, lead_row.last_name)), ''),
                         lead_row.email, 'lead ' || lead_row.id),
                lead_row.attributes ->> 'industry', lead_row.ai_score, lead_row.ai_summary,
                lead_row.ai_annotations, lead_row.attributes);
        created_client := true;
    ELSE
        -- An existing client: its empty fields filled, or the lead's values winning.
        client_key := target;
        IF overwrite THEN
            UPDATE clients c SET
                name = coalesce(nullif(btrim(lead_row.company_name), ''),
                                nullif(btrim(concat_ws(' ', lead_row.first_name,
                                                       lead_row.last_name)), ''),
                                lead_row.email, 'lead ' || lead_row.id),
                industry = coalesce(lead_row.attributes ->> 'industry', c.industry),
                ai_score = coalesce(lead_row.ai_score, c.ai_score),
                ai_summary = coalesce(lead_row.ai_summary, c.ai_summary),
                ai_annotations = c.ai_annotations || lead_row.ai_annotations,
                attributes = c.attributes || lead_row.attributes,
                updated_at = now()
            WHERE c.id = client_key;
        ELSE
            UPDATE clients c SET
                industry = coalesce(c.industry, lead_row.attributes ->> 'industry'),
                ai_score = coalesce(c.ai_score, lead_row.ai_score),
                ai_summary = coalesce(c.ai_summary, lead_row.ai_summary),
                ai_annotations = lead_row.ai_annotations || c.ai_annotations,
                attributes = lead_row.attributes || c.attributes,
                updated_at = now()
            WHERE c.id = client_key;
        END IF;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'No client has id %.', client_key
                USING ERRCODE = 'AC002', HINT = 'Check the id, e.g. with aicrm clients list.';
        END IF;
        created_client := false;
    END IF;

    UPDATE leads l SET converted_to_client_id = client_key, conversion_date = now(),
                       is_converted = true, status = 'converted', updated_at = now()
    WHERE l.id = lead_key;

    -- The contacts move to the client. Skipped when there are none (most leads): the
    -- index probe is cheaper than planning and running an UPDATE. (No contact can join
    -- the lead meanwhile: its foreign-key check waits for the lead's row lock.)
    contacts_moved := 0;
    IF EXISTS (SELECT 1 FROM contacts c WHERE c.lead_id = lead_key) THEN
        UPDATE contacts c SET client_id = client_key, lead_id = NULL, updated_at = now()
        WHERE c.lead_id = lead_key;
        GET DIAGNOSTICS contacts_moved = ROW_COUNT;
    END IF;

    client_id := client_key;
    conversion_date := now();
    already_converted := false;
END $$;

COMMENT ON FUNCTION aicrm_convert_lead(uuid, uuid, boolean, boolean, text) IS
    'Converts a lead into a new client, or into target_client_id (filling its empty fields, '
    'or all of them with overwrite), in the caller''s transaction; idempotent. Errors: '
    'AC002 unknown lead or client, AC003 converted already into another client, AC004 '
    'duplicate email (unless allow_duplicate). See docs/crm-core.md.';
