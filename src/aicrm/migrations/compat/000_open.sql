-- The compatibility window for code written for version 000, opened by migration 001
-- when asked (aicrm db migrate --compat-window). Design: docs/compat-window.md.
--
-- Schema aicrm_compat_000 holds views named leads, clients and contacts with the
-- columns those tables had before 001, in their order (the engine records them in the
-- transaction-local setting aicrm.compat_000_columns before 001 runs):
--   leads.client_id                  = leads.converted_to_client_id
--   clients.converted_from_lead_id   = the lead converted into the client (the first
--                                      by conversion_date, then id)
-- An old instance connects with options=-csearch_path=aicrm_compat_000,public.
-- aicrm_compat_000_definer holds the same views without security_invoker, read-only
-- and granted to nobody: what the user's rebuilt views that read as their owner use.
--
-- The views are security_invoker (PostgreSQL 15+; pgroll #179): the caller's own
-- privileges and row-level security on the tables decide, so granting the views to
-- PUBLIC gives nobody more than the tables give them. Writes the new structure can
-- express go through INSTEAD OF triggers (a conversion sets converted_to_client_id,
-- is_converted, conversion_date and status 'converted', as 001 and 002 do to legacy
-- data); the others raise feature_not_supported (0A000) with the reason. The trigger
-- functions pin search_path to pg_catalog, the CRM schema (the history triggers they
-- fire resolve their helpers there), pg_temp.

-- step: the compatibility schema
CREATE SCHEMA aicrm_compat_000;
COMMENT ON SCHEMA aicrm_compat_000 IS
    'aicrm compatibility window: leads, clients and contacts as code written for version '
    '000 (before migration 001) sees them. Close it with: aicrm db compat close.';
GRANT USAGE ON SCHEMA aicrm_compat_000 TO PUBLIC;
CREATE SCHEMA aicrm_compat_000_definer;
COMMENT ON SCHEMA aicrm_compat_000_definer IS
    'aicrm compatibility window, for the rebuilt views that read as their owner; '
    'closed with aicrm_compat_000.';

-- step: the views, their defaults and their write triggers
DO $open$
DECLARE
    crm text := (SELECT n.nspname FROM pg_class AS c
                 JOIN pg_namespace AS n ON n.oid = c.relnamespace
                 WHERE c.oid = 'leads'::regclass);
    wanted jsonb := current_setting('aicrm.compat_000_columns')::jsonb;
    legacy jsonb := '{"leads": "client_id", "clients": "converted_from_lead_id"}';
    origin text;
    tbl text;
    cols record;
    d record;
BEGIN
    origin := format('(SELECT f.id FROM %I.leads AS f WHERE f.converted_to_client_id = t.id '
                     'ORDER BY f.conversion_date, f.id LIMIT 1)', crm);
    FOREACH tbl IN ARRAY ARRAY['leads', 'clients', 'contacts'] LOOP
        SELECT
            string_agg(CASE WHEN x.col = legacy ->> tbl THEN
                           CASE tbl WHEN 'leads' THEN 't.converted_to_client_id AS client_id'
                                    ELSE origin || ' AS converted_from_lead_id' END
                       ELSE format('t.%I', x.col) END, ', ' ORDER BY x.ord) AS view_list,
            string_agg(CASE WHEN x.col = legacy ->> tbl THEN
                           CASE tbl WHEN 'leads' THEN 'converted_to_client_id AS client_id'
                                    ELSE 'NULL::uuid AS converted_from_lead_id' END
                       ELSE format('%I', x.col) END, ', ' ORDER BY x.ord) AS returning_list,
            string_agg(format('%I', x.col), ', ' ORDER BY x.ord)
                FILTER (WHERE x.writable) AS insert_cols,
            string_agg(CASE WHEN tbl = 'leads' AND x.col = 'status'
                            THEN 'CASE WHEN converting THEN ''converted'' ELSE NEW.status END'
                            ELSE format('NEW.%I', x.col) END, ', ' ORDER BY x.ord)
                FILTER (WHERE x.writable) AS insert_values,
            string_agg(CASE WHEN tbl = 'leads' AND x.col = 'status'
                            THEN 'status = CASE WHEN converting THEN ''converted'' ELSE NEW.status END'
                            ELSE format('%I = NEW.%I', x.col, x.col) END, ', ' ORDER BY x.ord)
                FILTER (WHERE x.writable) AS update_list
        INTO cols
        FROM (
            SELECT e.col, e.ord,
                   a.attnum IS NOT NULL AND a.attgenerated = '' AND a.attidentity <> 'a'
                       AS writable
            FROM jsonb_array_elements_text(wanted -> tbl) WITH ORDINALITY AS e (col, ord)
            LEFT JOIN pg_attribute AS a
                   ON a.attrelid = format('%I.%I', crm, tbl)::regclass
                  AND a.attname = e.col AND a.attnum > 0 AND NOT a.attisdropped
            WHERE a.attnum IS NOT NULL OR e.col = legacy ->> tbl
        ) AS x;

        EXECUTE format('CREATE VIEW aicrm_compat_000.%I WITH (security_invoker = true) AS '
                       'SELECT %s FROM %I.%I AS t', tbl, cols.view_list, crm, tbl);
        EXECUTE format('COMMENT ON VIEW aicrm_compat_000.%I IS %L', tbl,
                       format('%s as it was before migration 001 (compatibility window).', tbl));
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON aicrm_compat_000.%I TO PUBLIC', tbl);
        -- The same, read with its owner's rights: for the user's views rebuilt by
        -- --rebuild-dependents that were not security_invoker (they read as their owner,
        -- and keep doing so). Granted to nobody: the engine grants SELECT to the owners
        -- of those views only.
        EXECUTE format('CREATE VIEW aicrm_compat_000_definer.%I AS SELECT %s FROM %I.%I AS t',
                       tbl, cols.view_list, crm, tbl);
        -- INSTEAD OF triggers see only the view's own defaults: give it the table's.
        FOR d IN
            SELECT a.attname, pg_get_expr(ad.adbin, ad.adrelid) AS expr
            FROM pg_attribute AS a
            JOIN pg_attrdef AS ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
            WHERE a.attrelid = format('%I.%I', crm, tbl)::regclass AND a.attgenerated = ''
              AND a.attname IN (SELECT jsonb_array_elements_text(wanted -> tbl))
        LOOP
            EXECUTE format('ALTER VIEW aicrm_compat_000.%I ALTER COLUMN %I SET DEFAULT %s',
                           tbl, d.attname, d.expr);
        END LOOP;

        IF tbl = 'leads' THEN
            EXECUTE format($f$
CREATE FUNCTION aicrm_compat_000.leads_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, %1$I, pg_temp AS $body$
DECLARE
    converting boolean := NEW.client_id IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.client_id IS NULL);
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.client_id IS NOT NULL
       AND NEW.client_id IS DISTINCT FROM OLD.client_id THEN
        RAISE EXCEPTION 'aicrm_compat_000: lead %% is converted to client %%; since migration 001 a conversion is permanent, so leads.client_id cannot change or be cleared', OLD.id, OLD.client_id
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Leave client_id as it is; convert leads that are not converted yet.';
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO %1$I.leads (%2$s, converted_to_client_id, is_converted, conversion_date)
        VALUES (%3$s, NEW.client_id, converting, CASE WHEN converting THEN now() END)
        RETURNING %4$s INTO NEW;
    ELSE
        UPDATE %1$I.leads AS t SET %5$s,
            converted_to_client_id = CASE WHEN converting THEN NEW.client_id
                                          ELSE t.converted_to_client_id END,
            is_converted = t.is_converted OR converting,
            conversion_date = CASE WHEN converting THEN now() ELSE t.conversion_date END
        WHERE t.id = OLD.id
        RETURNING %4$s INTO NEW;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$body$
$f$, crm, cols.insert_cols, cols.insert_values, cols.returning_list, cols.update_list);
            EXECUTE 'CREATE TRIGGER aicrm_compat_write INSTEAD OF INSERT OR UPDATE '
                    'ON aicrm_compat_000.leads FOR EACH ROW '
                    'EXECUTE FUNCTION aicrm_compat_000.leads_write()';
        ELSIF tbl = 'clients' THEN
            EXECUTE format($f$
CREATE FUNCTION aicrm_compat_000.convert_lead(p_lead uuid, p_client uuid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, %1$I, pg_temp AS $body$
BEGIN
    UPDATE %1$I.leads SET converted_to_client_id = p_client, is_converted = true,
                          conversion_date = now(), status = 'converted'
    WHERE id = p_lead AND NOT is_converted;
    IF FOUND OR EXISTS (SELECT 1 FROM %1$I.leads
                        WHERE id = p_lead AND converted_to_client_id = p_client) THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM %1$I.leads WHERE id = p_lead) THEN
        RAISE EXCEPTION 'aicrm_compat_000: converted_from_lead_id names lead %%, which does not exist (or which you cannot see)', p_lead
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RAISE EXCEPTION 'aicrm_compat_000: lead %% is already converted to another client; since migration 001 a lead converts to one client only', p_lead
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Name a lead that is not converted yet.';
END
$body$
$f$, crm);
            EXECUTE format($f$
CREATE FUNCTION aicrm_compat_000.clients_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, %1$I, pg_temp AS $body$
DECLARE
    origin uuid := NEW.converted_from_lead_id;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.converted_from_lead_id IS NOT NULL
       AND origin IS DISTINCT FROM OLD.converted_from_lead_id THEN
        RAISE EXCEPTION 'aicrm_compat_000: client %% was converted from lead %%; since migration 001 a conversion is permanent, so clients.converted_from_lead_id cannot change or be cleared', OLD.id, OLD.converted_from_lead_id
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Leave converted_from_lead_id as it is.';
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO %1$I.clients (%2$s) VALUES (%3$s) RETURNING %4$s INTO NEW;
    ELSE
        UPDATE %1$I.clients AS t SET %5$s WHERE t.id = OLD.id RETURNING %4$s INTO NEW;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    IF origin IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.converted_from_lead_id IS NULL) THEN
        PERFORM aicrm_compat_000.convert_lead(origin, NEW.id);
    END IF;
    NEW.converted_from_lead_id := (
        SELECT f.id FROM %1$I.leads AS f WHERE f.converted_to_client_id = NEW.id
        ORDER BY f.conversion_date, f.id LIMIT 1);
    RETURN NEW;
END
$body$
$f$, crm, cols.insert_cols, cols.insert_values, cols.returning_list, cols.update_list);
            EXECUTE 'CREATE TRIGGER aicrm_compat_write INSTEAD OF INSERT OR UPDATE '
                    'ON aicrm_compat_000.clients FOR EACH ROW '
                    'EXECUTE FUNCTION aicrm_compat_000.clients_write()';
        ELSE
            EXECUTE format($f$
CREATE FUNCTION aicrm_compat_000.contacts_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, %1$I, pg_temp AS $body$
BEGIN
    IF num_nonnulls(NEW.lead_id, NEW.client_id) <> 1 THEN
        RAISE EXCEPTION 'aicrm_compat_000: contact %% would have %%; since migration 001 a contact belongs to a lead or to a client, exactly one', NEW.id,
            CASE WHEN NEW.lead_id IS NULL THEN 'no parent' ELSE 'both a lead and a client' END
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Set lead_id or client_id, not both; a client''s contact needs only client_id.';
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO %1$I.contacts (%2$s) VALUES (%3$s) RETURNING %4$s INTO NEW;
    ELSE
        UPDATE %1$I.contacts AS t SET %5$s WHERE t.id = OLD.id RETURNING %4$s INTO NEW;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$body$
$f$, crm, cols.insert_cols, cols.insert_values, cols.returning_list, cols.update_list);
            EXECUTE 'CREATE TRIGGER aicrm_compat_write INSTEAD OF INSERT OR UPDATE '
                    'ON aicrm_compat_000.contacts FOR EACH ROW '
                    'EXECUTE FUNCTION aicrm_compat_000.contacts_write()';
        END IF;
    END LOOP;
END
$open$;
