-- Migration 009: privileges carry over (docs/least-privilege.md).
--   * the history trigger functions run as their owner (the role that migrates),
--     SECURITY DEFINER with a pinned search_path (pg_catalog, this schema, pg_temp
--     last so a temporary table cannot stand in for crm_history): any role that may
--     insert, update or delete leads, clients or contacts gets its history written,
--     without any privilege on crm_history. They are trigger functions (PostgreSQL
--     refuses to call those directly) and EXECUTE is revoked from PUBLIC besides.
--     aicrm_history_update_row_rebuild() (007) regenerates one of them: redefined
--     here so that the regenerated function keeps both settings.
--   * a merge moves the merged lead's history by a trigger on lead_merges (owner's
--     rights, checked: the merged lead must exist, be open, and be gone by commit),
--     so a role that may delete leads can merge them without UPDATE on crm_history.
--   * the views run with the caller's rights (security_invoker, PostgreSQL 15+):
--     row-level security on leads holds through them.
--   * grants computed from the catalogue (aicrm_grant_readers): a role that can read
--     every base relation of a view can read the view; crm_history and lead_merges
--     are readable by roles that read leads, clients and contacts when no row-level
--     security applies to those (the history would show hidden rows); lead_statuses by
--     roles that read leads; INSERT on lead_merges for roles that may delete leads.
-- The guard of converted leads reads no table: it stays SECURITY INVOKER.

-- step: helpers that compute grants from the catalogue
-- The relations a view reads (tables or other views), from its rewrite rule.
CREATE FUNCTION aicrm_view_bases(view regclass) RETURNS regclass[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(DISTINCT d.refobjid::regclass), '{}')
    FROM pg_rewrite r
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                    AND d.refclassid = 'pg_class'::regclass
    WHERE r.ev_class = view AND d.refobjid <> view
$$;

-- GRANT privilege ON relation to every role (but superusers, the caller and pg_*
-- roles) holding required on each of bases; returns the roles granted to.
CREATE FUNCTION aicrm_grant_readers(
    relation regclass, bases regclass[], privilege text DEFAULT 'SELECT',
    required text DEFAULT 'SELECT'
) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    granted text[] := '{}';
    r record;
BEGIN
    IF privilege NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE') THEN
        RAISE EXCEPTION 'aicrm_grant_readers: unknown privilege %', privilege;
    END IF;
    FOR r IN
        SELECT a.rolname FROM pg_roles a
        WHERE NOT a.rolsuper AND a.rolname !~ '^pg_' AND a.rolname <> current_user
          AND cardinality(bases) > 0
          AND NOT has_table_privilege(a.oid, relation, privilege)
          AND (SELECT bool_and(has_table_privilege(a.oid, b, required)) FROM unnest(bases) b)
        ORDER BY a.rolname
    LOOP
        EXECUTE format('GRANT %s ON %s TO %I', privilege, relation, r.rolname);
        granted := granted || r.rolname::text;
    END LOOP;
    RETURN granted;
END $$;
REVOKE EXECUTE ON FUNCTION aicrm_grant_readers(regclass, regclass[], text, text) FROM PUBLIC;

-- Whether any of the relations has row-level security enabled.
CREATE FUNCTION aicrm_row_security(relations regclass[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(bool_or(c.relrowsecurity), false) FROM pg_class c
    WHERE c.oid = ANY(relations)
$$;

-- step: history trigger functions run as their owner, with a pinned search_path
DO $$
DECLARE
    f text;
    path text := format('pg_catalog, %I, pg_temp', current_schema());
BEGIN
    FOREACH f IN ARRAY ARRAY['aicrm_history_insert()', 'aicrm_history_delete()',
                             'aicrm_history_update()', 'aicrm_history_update_row()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %s', f, path);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- step: the regenerated update-history function keeps SECURITY DEFINER and its search_path
-- 007's function, but for the SECURITY DEFINER and SET clauses of what it writes.
CREATE OR REPLACE FUNCTION aicrm_history_update_row_rebuild() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    branches text := '';
    relation regclass;
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['leads', 'clients', 'contacts'] LOOP
        relation := to_regclass(quote_ident(current_schema()) || '.' || quote_ident(name));
        CONTINUE WHEN relation IS NULL;
        branches := branches || format(
            E'    %s TG_TABLE_NAME = %L THEN\n        changes := %s;\n',
            CASE WHEN branches = '' THEN 'IF' ELSE 'ELSIF' END, name,
            aicrm_history_changes_sql(relation));
    END LOOP;
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION aicrm_history_update_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %I, pg_temp AS $body$
-- Generated by aicrm_history_update_row_rebuild() (migrations 007, 009): rebuilt by
-- aicrm_history_refresh(table); do not edit.
DECLARE
    ai boolean := coalesce(current_setting('aicrm.history_ai', true), '') = 'on';
    changes jsonb;
    old_row jsonb;
BEGIN
%s    %s
        old_row := to_jsonb(OLD);
        SELECT jsonb_object_agg(n.key, jsonb_build_array(old_row -> n.key, n.value))
        INTO changes
        FROM jsonb_each(to_jsonb(NEW)) AS n
        WHERE (old_row -> n.key) IS DISTINCT FROM n.value AND aicrm_history_tracked(n.key);
    END IF;
    IF changes IS NOT NULL AND changes <> '{}'::jsonb THEN
        INSERT INTO crm_history (table_name, row_id, operation, actor, changes)
        VALUES (TG_TABLE_NAME, NEW.id, 'update', aicrm_actor(), changes);
    END IF;
    RETURN NULL;
END
$body$
$f$, current_schema(), branches, CASE WHEN branches = '' THEN 'IF true THEN' ELSE 'ELSE' END);
END $$;
SELECT aicrm_history_update_row_rebuild();

-- step: a merge moves the merged lead's history (owner's rights, checked)
CREATE FUNCTION aicrm_merge_moves_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF NEW.kept_lead_id = NEW.merged_lead_id OR NOT EXISTS (
        SELECT 1 FROM leads l WHERE l.id = NEW.merged_lead_id AND NOT l.is_converted
    ) THEN
        RAISE EXCEPTION 'a merge records an open lead, other than the kept one, that it deletes'
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE crm_history SET row_id = NEW.kept_lead_id
    WHERE table_name = 'leads' AND row_id = NEW.merged_lead_id;
    RETURN NEW;
END $$;
CREATE FUNCTION aicrm_merge_deletes_lead() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM leads l WHERE l.id = NEW.merged_lead_id) THEN
        RAISE EXCEPTION 'lead % is recorded as merged but was not deleted', NEW.merged_lead_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
DO $$  -- pinned like the history functions (the schema's name is known only here)
DECLARE
    path text := format('pg_catalog, %I, pg_temp', current_schema());
BEGIN
    EXECUTE format('ALTER FUNCTION aicrm_merge_moves_history() SET search_path = %s', path);
    EXECUTE format('ALTER FUNCTION aicrm_merge_deletes_lead() SET search_path = %s', path);
END $$;
REVOKE EXECUTE ON FUNCTION aicrm_merge_moves_history() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION aicrm_merge_deletes_lead() FROM PUBLIC;
CREATE TRIGGER aicrm_merge_moves_history BEFORE INSERT ON lead_merges
    FOR EACH ROW EXECUTE FUNCTION aicrm_merge_moves_history();
CREATE CONSTRAINT TRIGGER aicrm_merge_deletes_lead AFTER INSERT ON lead_merges
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION aicrm_merge_deletes_lead();

-- step: views run with the caller's rights (row-level security holds through them)
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 150000 THEN
        ALTER VIEW lead_conversion_summary SET (security_invoker = true);
        ALTER VIEW client_lead_history SET (security_invoker = true);
        ALTER VIEW lead_status_periods SET (security_invoker = true);
    ELSE
        RAISE NOTICE 'PostgreSQL before 15 has no security_invoker views: the views run '
            'with their owner''s rights, so row-level security on leads does not apply '
            'through them';
    END IF;
END $$;

-- step: grants from the catalogue: what each role could read or do before
DO $$
DECLARE
    crm regclass[] := ARRAY['leads', 'clients', 'contacts']::regclass[];
BEGIN
    IF NOT aicrm_row_security(crm) THEN
        PERFORM aicrm_grant_readers('crm_history', crm);
        PERFORM aicrm_grant_readers('lead_merges', ARRAY['leads']::regclass[]);
    END IF;
    PERFORM aicrm_grant_readers('lead_statuses', ARRAY['leads']::regclass[]);
    PERFORM aicrm_grant_readers('lead_merges', ARRAY['leads']::regclass[], 'INSERT', 'DELETE');
    PERFORM aicrm_grant_readers('lead_conversion_summary', aicrm_view_bases('lead_conversion_summary'));
    PERFORM aicrm_grant_readers('client_lead_history', aicrm_view_bases('client_lead_history'));
    PERFORM aicrm_grant_readers('lead_status_periods', aicrm_view_bases('lead_status_periods'));
END $$;
