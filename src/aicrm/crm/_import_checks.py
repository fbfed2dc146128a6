"""The SQL of one CSV import: the staging table, the set-based checks of every row, and
the one INSERT of the valid rows (see :mod:`aicrm.crm.importer` for how an import runs)."""

from __future__ import annotations

from psycopg import sql

from aicrm.crm._import_history import HISTORY_CHECK
from aicrm.crm._import_kinds import CASTS
from aicrm.crm._import_spec import Spec
from aicrm.crm.records import OPEN_STATUSES
from aicrm.db import Connection

# Up to this many rows, the import takes the per-email advisory locks that
# single creations take (aicrm.crm.duplicates); see "Concurrency" in aicrm.crm.importer.
LOCK_LIMIT = 1000
STAGING = sql.Identifier("aicrm_import_rows")
ERRORS = sql.Identifier("aicrm_import_errors")
DEALT = sql.Identifier("aicrm_import_owners")  # aicrm.crm._import_owners' owners
# What Python's str.strip() removes from an email, for btrim().
BLANKS = " \t\n\r\f\v"

# Before PostgreSQL 16 there is no pg_input_is_valid(): these session-local
# functions try the cast instead (slower: a subtransaction per value).
VALIDATORS_15 = """
CREATE OR REPLACE FUNCTION pg_temp.{function}(value text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM value::{type};
    RETURN true;
EXCEPTION WHEN others THEN
    RETURN false;
END $$
"""


class Checks:
    """The SQL of one import: the staging table, the checks, the insert."""

    def __init__(
        self,
        spec: Spec,
        columns: tuple[str, ...],
        has_input_check: bool,
        *,
        staged: tuple[str, ...] = (),
        attributes: tuple[tuple[str, str], ...] = (),
        settable: tuple[str, ...] = OPEN_STATUSES,
    ) -> None:
        self.spec = spec
        self.settable = settable  # the statuses a row may have (lead_statuses, 008)
        self.columns = columns  # the spec's columns the file has
        self.staged = staged or columns  # every column of the file, in order
        self.attributes = attributes  # (staged column, attribute key) of a mapping
        self.has_input_check = has_input_check
        # owners dealt by the assignment rules, in a TEMP table (aicrm.crm._import_owners)
        self.dealt = False

    def has(self, name: str) -> bool:
        return name in self.columns

    def create_staging(self, conn: Connection) -> None:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}, pg_temp.{}").format(STAGING, ERRORS))
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (line bigint GENERATED ALWAYS AS IDENTITY (START 2), {}) "
                "ON COMMIT DROP"
            ).format(
                STAGING,
                sql.SQL(", ").join(
                    sql.SQL("{} text").format(sql.Identifier(c)) for c in self.staged
                ),
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (seq bigint GENERATED ALWAYS AS IDENTITY, "
                "line bigint NOT NULL, reason text NOT NULL) ON COMMIT DROP"
            ).format(ERRORS)
        )
        if not self.has_input_check:
            for name in sorted(CASTS):
                conn.execute(
                    sql.SQL(VALIDATORS_15).format(
                        function=sql.Identifier(f"aicrm_valid_{name}"), type=CASTS[name]
                    )
                )

    # Expressions over the staging row ``s``.

    def raw(self, name: str) -> sql.Composable:
        return sql.SQL("s.{}").format(sql.Identifier(name))

    def value(self, name: str) -> sql.Composable:
        """The field, trimmed, NULL when blank."""
        return sql.SQL("nullif(btrim(s.{}, {}), '')").format(
            sql.Identifier(name), sql.Literal(BLANKS)
        )

    def valid(self, expr: sql.Composable, type_name: str) -> sql.Composable:
        if self.has_input_check:
            return sql.SQL("pg_input_is_valid({}, {})").format(expr, sql.Literal(type_name))
        return sql.SQL("pg_temp.{}({})").format(sql.Identifier(f"aicrm_valid_{type_name}"), expr)

    def typed(self, name: str) -> sql.Composable:
        """The field cast to its type when valid, else NULL (for joins)."""
        type_name = self.spec.type_of(name)
        v = self.value(name)
        return sql.SQL("CASE WHEN {valid} THEN {v}::{t} END").format(
            valid=self.valid(v, type_name), v=v, t=CASTS[type_name]
        )

    def mapped_attributes(self) -> sql.Composable:
        """The attributes a mapping fills from other columns, as one JSON object
        (blank fields left out)."""
        pairs = [
            sql.SQL("{}, {}").format(sql.Literal(key), self.value(column))
            for column, key in self.attributes
        ]
        return sql.SQL("jsonb_strip_nulls(jsonb_build_object({}))").format(
            sql.SQL(", ").join(pairs)
        )

    def typed_or_null(self, name: str) -> sql.Composable:
        """:meth:`typed`, or a typed NULL when the file has no such column."""
        if self.has(name):
            return self.typed(name)
        return sql.SQL("NULL::{}").format(CASTS[self.spec.type_of(name)])

    def history_values(self) -> dict[str, sql.Composable]:
        """The typed values the history checks and statements of a historical import
        read (aicrm.crm._import_history)."""
        created = self.typed("created_at") if self.has("created_at") else sql.SQL("now()")
        raw_conv = self.typed_or_null("conversion_date")
        return {
            # a date-only conversion on the day of creation counts from the creation
            "conv": sql.SQL("CASE WHEN {c} IS NOT NULL THEN greatest({c}, {t}) END").format(
                c=raw_conv, t=created
            ),
            "raw_conv": raw_conv,
            "status": self.value("status") if self.has("status") else sql.SQL("NULL::text"),
            "status_at": self.typed_or_null("status_at"),
            "contacted": self.typed_or_null("contacted_at"),
            "qualified": self.typed_or_null("qualified_at"),
            "created": created,
            "client": self.typed_or_null("converted_to_client_id"),
            "client_name": self.value("client_name")
            if self.has("client_name")
            else sql.SQL("NULL::text"),
            "id": self.typed("id") if self.has("id") else sql.SQL("NULL::uuid"),
        }

    def shown(self, name: str) -> sql.Composable:
        """The field as it reads in a message: quoted, cut at 60 characters."""
        return sql.SQL("quote_literal(left({}, 60))").format(self.raw(name))

    def field_checks(self) -> tuple[list[sql.Composable], list[sql.Composable]]:
        """Expressions that are a reason (text) or NULL, and the joins they need."""
        spec = self.spec
        checks: list[sql.Composable] = []
        joins: list[sql.Composable] = []
        present = [n for n in spec.needs_one_of if self.has(n)]
        checks.append(
            sql.SQL("CASE WHEN {} THEN {} END").format(
                sql.SQL(" AND ").join(sql.SQL("{} IS NULL").format(self.value(n)) for n in present),
                sql.Literal(f"a {spec.noun} needs {spec.needs_text}"),
            )
        )
        for name in self.columns:
            check = spec.check(self, name)
            if check is not None:
                checks.append(check)
        if spec.history:
            checks.append(sql.SQL(HISTORY_CHECK).format(**self.history_values()))
        if self.has("id"):
            joins.append(
                sql.SQL("LEFT JOIN {} taken ON taken.id = {}").format(
                    sql.Identifier(spec.table), self.typed("id")
                )
            )
            checks.append(
                sql.SQL(
                    "CASE WHEN taken.id IS NOT NULL THEN format({template}, taken.id) END"
                ).format(template=sql.Literal(f"id %s is already taken by a {spec.noun}"))
            )
        if spec.parents:
            checks.append(self._one_parent())
            for parent in spec.parents:
                name, table, alias = parent.column, parent.table, parent.alias
                if not self.has(name):
                    continue
                joins.append(
                    sql.SQL("LEFT JOIN {} {} ON {}.id = {}").format(
                        sql.Identifier(table),
                        sql.Identifier(alias),
                        sql.Identifier(alias),
                        self.typed(name),
                    )
                )
                checks.append(
                    sql.SQL(
                        "CASE WHEN {typed} IS NOT NULL AND {alias}.id IS NULL THEN "
                        "format({template}, {typed}) END"
                    ).format(
                        typed=self.typed(name),
                        alias=sql.Identifier(alias),
                        template=sql.Literal(f"no {table[:-1]} has id %s"),
                    )
                )
        return checks, joins

    def _one_parent(self) -> sql.Composable:
        lead = self.value("lead_id") if self.has("lead_id") else sql.SQL("NULL")
        client = self.value("client_id") if self.has("client_id") else sql.SQL("NULL")
        return sql.SQL(
            "CASE WHEN {lead} IS NULL AND {client} IS NULL THEN "
            "'a contact needs a lead_id or a client_id' "
            "WHEN {lead} IS NOT NULL AND {client} IS NOT NULL THEN "
            "'a contact belongs to one lead or one client, not both' END"
        ).format(lead=lead, client=client)

    def run(self, conn: Connection, allow_duplicates: bool, rows: int) -> int:
        """Record every invalid row in the errors table; how many there are."""
        checks, joins = self.field_checks()
        conn.execute(
            sql.SQL(
                "INSERT INTO {errors} (line, reason) SELECT line, reason FROM ("
                "SELECT s.line, concat_ws('; ', {checks}) AS reason FROM {staging} s {joins}"
                ") AS checked WHERE reason <> ''"
            ).format(
                errors=ERRORS,
                checks=sql.SQL(", ").join(checks),
                staging=STAGING,
                joins=sql.SQL(" ").join(joins),
            )
        )
        if self.has("id"):
            conn.execute(self._repeated_ids())
        if not allow_duplicates and self.has("email"):
            if rows <= LOCK_LIMIT:
                conn.execute(self._email_locks())
            conn.execute(self._duplicates())
        row = conn.execute(sql.SQL("SELECT count(DISTINCT line) FROM {}").format(ERRORS)).fetchone()
        assert row is not None
        count: int = row[0]
        if count:
            conn.execute(sql.SQL("CREATE INDEX ON {} (line)").format(ERRORS))
            conn.execute(sql.SQL("ANALYZE {}").format(ERRORS))
        return count

    def _repeated_ids(self) -> sql.Composed:
        return sql.SQL(
            "INSERT INTO {errors} (line, reason) "
            "SELECT s.line, format('id %s is also on line %s', r.id, r.first) "
            "FROM {staging} s JOIN ("
            "  SELECT {typed} AS id, min(s.line) AS first FROM {staging} s "
            "  WHERE {typed} IS NOT NULL GROUP BY 1 HAVING count(*) > 1"
            ") r ON r.id = {typed} WHERE s.line <> r.first"
        ).format(errors=ERRORS, staging=STAGING, typed=self.typed("id"))

    def _email_locks(self) -> sql.Composed:
        # The lock of aicrm.crm.duplicates.LOCK_EMAIL, taken in one order.
        return sql.SQL(
            "SELECT count(pg_advisory_xact_lock(k)) FROM ("
            "SELECT DISTINCT hashtext('aicrm:email:' || lower({v})) AS k FROM {staging} s "
            "WHERE {v} IS NOT NULL ORDER BY 1) AS keys"
        ).format(v=self.value("email"), staging=STAGING)

    def _duplicates(self) -> sql.Composed:
        """Duplicate emails of rows that passed the field checks: within the file
        (every row after the first one with that email; for contacts, not other
        contacts of that same lead) and against the leads and contacts in the
        database (aicrm.crm.duplicates' rule: a contact of a lead may share the
        lead's email, and its other contacts')."""
        lead = self.typed("lead_id") if self.has("lead_id") else sql.SQL("NULL::uuid")
        return sql.SQL("""
WITH c AS MATERIALIZED (
    SELECT s.line, {v} AS email, lower({v}) AS key, {lead} AS lead_id
    FROM {staging} s
    WHERE {v} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {errors} e WHERE e.line = s.line)
), repeated AS (
    SELECT DISTINCT ON (c.key) c.key, c.line AS first, c.lead_id AS first_lead
    FROM c WHERE c.key IN (SELECT key FROM c GROUP BY key HAVING count(*) > 1)
    ORDER BY c.key, c.line
), found AS (
    SELECT c.line, format('email %s is also on line %s', c.email, r.first) AS reason
    FROM c JOIN repeated r USING (key)
    WHERE c.line <> r.first AND (c.lead_id IS NULL OR c.lead_id IS DISTINCT FROM r.first_lead)
    UNION ALL
    SELECT c.line, format('email %s already belongs to lead %s', c.email, min(l.id::text))
    FROM c JOIN leads l ON lower(l.email) = c.key AND l.id IS DISTINCT FROM c.lead_id
    GROUP BY c.line, c.email
    UNION ALL
    SELECT c.line, format('email %s already belongs to contact %s', c.email, min(x.id::text))
    FROM c JOIN contacts x ON lower(x.email) = c.key
     AND (c.lead_id IS NULL OR x.lead_id IS DISTINCT FROM c.lead_id)
    GROUP BY c.line, c.email
)
INSERT INTO {errors} (line, reason) SELECT line, reason FROM found
""").format(v=self.value("email"), lead=lead, staging=STAGING, errors=ERRORS)

    # The insert.

    def insert_statement(self, skip_errors: bool) -> sql.Composed:
        """One INSERT … SELECT of the valid rows, in the order of their ids: the
        primary key, the (created_at, id) index and the history's row index then
        grow at their right edge instead of at random places (less I/O and WAL)."""
        names = ["id"]
        values: list[sql.Composable] = [
            sql.SQL("s.aicrm_lead")
            if self.spec.history
            else sql.SQL("coalesce({}::uuid, gen_random_uuid())").format(self.value("id"))
            if self.has("id")
            else sql.SQL("gen_random_uuid()")
        ]
        if self.spec.history:
            history = self.history_values()
            names += ["is_converted", "converted_to_client_id"]
            values += [
                sql.SQL("{} IS NOT NULL").format(history["conv"]),
                sql.SQL("coalesce({}, s.aicrm_client)").format(history["client"]),
            ]
            if not self.has("status"):
                names.append("status")
                values.append(
                    sql.SQL("CASE WHEN {} IS NOT NULL THEN 'converted' ELSE 'new' END").format(
                        history["conv"]
                    )
                )
        if self.attributes and not self.has("attributes"):
            names.append("attributes")
            values.append(self.mapped_attributes())
        for name in self.columns:
            value = self.spec.inserted(self, name)
            if value is not None:
                names.append(name)
                # a row's own owner wins over the one the rules dealt it
                dealt = self.dealt and name == "owner_id"
                values.append(sql.SQL("coalesce({}, o.owner_id)").format(value) if dealt else value)
        if self.dealt and not self.has("owner_id"):
            names.append("owner_id")
            values.append(sql.SQL("o.owner_id"))
        joined = (
            sql.SQL(" LEFT JOIN {} o ON o.line = s.line").format(DEALT)
            if self.dealt
            else sql.SQL("")
        )
        where = (
            sql.SQL(" WHERE NOT EXISTS (SELECT 1 FROM {} e WHERE e.line = s.line)").format(ERRORS)
            if skip_errors
            else sql.SQL("")
        )
        return sql.SQL(
            "INSERT INTO {table} ({names}) SELECT {values} FROM {staging} s{joined}{where} "
            "ORDER BY 1"
        ).format(
            table=sql.Identifier(self.spec.table),
            names=sql.SQL(", ").join(sql.Identifier(n) for n in names),
            values=sql.SQL(", ").join(values),
            staging=STAGING,
            joined=joined,
            where=where,
        )
