"""A catalog snapshot of the current schema, to report what a run adds and drops,
and the per-table row counts a transaction changed (from pg_stat_xact_user_tables)."""

from __future__ import annotations

from dataclasses import dataclass

from aicrm.db import Connection

OBJECTS = """
SELECT 'table ' || c.relname FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
UNION ALL
SELECT 'view ' || c.relname FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('v', 'm')
UNION ALL
SELECT 'index ' || c.relname FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'i'
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
WHERE c.relnamespace = current_schema()::regnamespace AND k.contype <> 'n'
UNION ALL
SELECT 'trigger ' || c.relname || '.' || t.tgname FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace
"""

ROW_CHANGES = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables
WHERE schemaname = current_schema() AND (n_tup_ins + n_tup_upd + n_tup_del) > 0
ORDER BY relname
"""


@dataclass(frozen=True)
class RowChanges:
    table: str
    inserted: int
    updated: int
    deleted: int


def objects(conn: Connection) -> set[str]:
    """Every table, view, index, column, constraint, trigger and function in the
    schema, but the engine's own ledger."""
    return {
        row[0]
        for row in conn.execute(OBJECTS).fetchall()
        if "aicrm_schema_migrations" not in row[0]
    }


def summarize(names: list[str]) -> list[str]:
    """Drop the columns and constraints of tables that are themselves in ``names``:
    'table leads' says enough about a table that was created or dropped whole."""
    whole = {name.split(" ", 1)[1] for name in names if name.startswith("table ")}
    return [
        name
        for name in names
        if not (
            name.split(" ", 1)[0] in ("column", "constraint")
            and name.split(" ", 2)[1].split(".", 1)[0] in whole
        )
    ]


def row_changes(conn: Connection) -> list[RowChanges]:
    """Rows inserted, updated and deleted per table by the current transaction."""
    return [RowChanges(*row) for row in conn.execute(ROW_CHANGES).fetchall()]
