"""Everything that depends on the columns a migration drops, found before anything changes.

A migration declares the columns it drops or changes in its checks file (so that
the checksum of its ``.sql`` stays what the ledger recorded)::

    -- aicrm:drops leads.client_id (use leads.converted_to_client_id), clients.x

Before the backup and before any change, :func:`find` looks for every object that
uses one of them, all at once:

* what PostgreSQL tracks in ``pg_depend`` (through ``pg_rewrite`` for views,
  materialized views and rules, ``pg_trigger``, ``pg_policy``, ``pg_attrdef`` for
  generated columns, ``pg_index``, ``pg_statistic_ext``, ``pg_publication_rel`` for
  column lists and row filters, ``pg_proc`` for SQL-standard function bodies, and
  ``pg_constraint``), classified by ``pg_identify_object``;
* functions and procedures whose body text (``prosrc``) mentions the column: a
  textual search, since PostgreSQL does not track string bodies. A body counts
  when it names the column as a word and also the table, or when the function is a
  trigger function of that table. It can find a false positive (another table's
  column of that name), never the reverse for plain names.

Each :class:`Dependent` carries the lines of its definition that use the column and
what to do. aicrm's own objects (``aicrm_*``, ``migration_NNN_*``, the compatibility
schemas) are left out. Indexes and constraints on the column are dropped with it and
recorded by the migration for its downgrade: they are reported, not blocking.
Design: docs/dependents.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from aicrm.db import Connection
from aicrm.errors import UsageError
from aicrm.migrate.loader import Migration

DIRECTIVE = re.compile(r"^--\s*aicrm:(drops|changes)\s+(.+?)\s*$", re.MULTILINE)
COLUMN = re.compile(r"([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)(?:\s*\(use ([^)]*)\))?\s*(?:,|$)")
OWN = re.compile(r'(^|[\s."])(aicrm_|migration_\d{3}_)')

# Every object pg_depend records on one of the columns, with a kind, a name, a
# statement that removes it, and its definition (the text the lines come from).
TRACKED = """
SELECT d.classid::regclass::text, d.objid, o.type, o.identity,
       CASE d.classid
         WHEN 'pg_rewrite'::regclass THEN (
           SELECT CASE WHEN r.rulename <> '_RETURN' THEN 'rule'
                       WHEN v.relkind = 'm' THEN 'materialized view' ELSE 'view' END
           FROM pg_rewrite AS r JOIN pg_class AS v ON v.oid = r.ev_class WHERE r.oid = d.objid)
         WHEN 'pg_proc'::regclass THEN (
           SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END
           FROM pg_proc AS p WHERE p.oid = d.objid)
         WHEN 'pg_attrdef'::regclass THEN (
           SELECT CASE WHEN a.attgenerated <> '' THEN 'generated column' ELSE 'default' END
           FROM pg_attrdef AS ad
           JOIN pg_attribute AS a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
           WHERE ad.oid = d.objid)
         WHEN 'pg_constraint'::regclass THEN (
           SELECT CASE k.contype WHEN 'f' THEN 'foreign key' ELSE 'constraint' END
           FROM pg_constraint AS k WHERE k.oid = d.objid)
         WHEN 'pg_publication_rel'::regclass THEN 'publication'
         ELSE o.type
       END AS kind,
       CASE d.classid
         WHEN 'pg_rewrite'::regclass THEN (
           SELECT CASE WHEN r.rulename = '_RETURN' THEN r.ev_class::regclass::text
                       ELSE format('%%I ON %%s', r.rulename, r.ev_class::regclass) END
           FROM pg_rewrite AS r WHERE r.oid = d.objid)
         WHEN 'pg_trigger'::regclass THEN (
           SELECT format('%%I ON %%s', t.tgname, t.tgrelid::regclass)
           FROM pg_trigger AS t WHERE t.oid = d.objid)
         WHEN 'pg_policy'::regclass THEN (
           SELECT format('%%I ON %%s', p.polname, p.polrelid::regclass)
           FROM pg_policy AS p WHERE p.oid = d.objid)
         WHEN 'pg_attrdef'::regclass THEN (
           SELECT format('%%s.%%I', ad.adrelid::regclass, a.attname)
           FROM pg_attrdef AS ad
           JOIN pg_attribute AS a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
           WHERE ad.oid = d.objid)
         WHEN 'pg_publication_rel'::regclass THEN (
           SELECT format('%%I ON %%s', p.pubname, pr.prrelid::regclass)
           FROM pg_publication_rel AS pr JOIN pg_publication AS p ON p.oid = pr.prpubid
           WHERE pr.oid = d.objid)
         WHEN 'pg_proc'::regclass THEN d.objid::regprocedure::text
         WHEN 'pg_class'::regclass THEN d.objid::regclass::text
         ELSE o.identity
       END AS name,
       CASE d.classid
         WHEN 'pg_rewrite'::regclass THEN (
           SELECT CASE WHEN r.rulename = '_RETURN' THEN pg_get_viewdef(r.ev_class, true)
                       ELSE pg_get_ruledef(r.oid, true) END
           FROM pg_rewrite AS r WHERE r.oid = d.objid)
         WHEN 'pg_proc'::regclass THEN pg_get_functiondef(d.objid)
         WHEN 'pg_trigger'::regclass THEN pg_get_triggerdef(d.objid, true)
         WHEN 'pg_policy'::regclass THEN (
           SELECT concat_ws(E'\\n', 'USING (' || pg_get_expr(p.polqual, p.polrelid) || ')',
                            'WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')')
           FROM pg_policy AS p WHERE p.oid = d.objid)
         WHEN 'pg_attrdef'::regclass THEN (
           SELECT 'GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ')'
           FROM pg_attrdef AS ad WHERE ad.oid = d.objid)
         WHEN 'pg_class'::regclass THEN pg_get_indexdef(d.objid)
         WHEN 'pg_statistic_ext'::regclass THEN pg_get_statisticsobjdef(d.objid)
         WHEN 'pg_constraint'::regclass THEN pg_get_constraintdef(d.objid, true)
         WHEN 'pg_publication_rel'::regclass THEN (
           SELECT {publication} FROM pg_publication_rel AS pr WHERE pr.oid = d.objid)
         ELSE o.identity
       END AS definition
FROM pg_depend AS d
CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) AS o
WHERE d.refclassid = 'pg_class'::regclass
  AND d.refobjid = to_regclass(%(table)s)
  AND d.refobjsubid = (SELECT a.attnum FROM pg_attribute AS a
                       WHERE a.attrelid = to_regclass(%(table)s) AND a.attname = %(column)s
                         AND NOT a.attisdropped)
  AND d.deptype IN ('n', 'a')
ORDER BY 5, 6
"""

# The definition of a publication's entry: its column list (prattrs, PostgreSQL 15+)
# and its row filter; PostgreSQL 14 has neither.
PUBLICATION_15 = sql.SQL(
    """concat_ws(E'\\n', 'columns: ' || (
               SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
               FROM pg_attribute AS a
               WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs)),
             'WHERE (' || pg_get_expr(pr.prqual, pr.prrelid) || ')')"""
)
PUBLICATION_14 = sql.SQL("NULL::text")

# Functions and procedures whose body text names the column as a word, and the
# table too (or that are trigger functions of the table). A textual search.
TEXTUAL = """
SELECT p.oid::regprocedure::text,
       CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END,
       p.prosrc,
       (SELECT setting FROM unnest(p.proconfig) AS setting
        WHERE setting LIKE 'search\\_path=%%') AS search_path,
       EXISTS (SELECT 1 FROM pg_trigger AS t
               WHERE t.tgfoid = p.oid AND t.tgrelid = to_regclass(%(table)s)) AS on_table
FROM pg_proc AS p
JOIN pg_namespace AS n ON n.oid = p.pronamespace
JOIN pg_language AS lang ON lang.oid = p.prolang
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%%'
  AND n.nspname NOT LIKE 'aicrm\\_compat\\_%%'
  AND lang.lanname NOT IN ('c', 'internal')
  AND NOT EXISTS (SELECT 1 FROM pg_depend AS e
                  WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')
  AND p.prosrc ~* ('\\m' || %(column)s || '\\M')
  AND (p.prosrc ~* ('\\m' || %(bare)s || '\\M')
       OR EXISTS (SELECT 1 FROM pg_trigger AS t
                  WHERE t.tgfoid = p.oid AND t.tgrelid = to_regclass(%(table)s)))
ORDER BY 1
"""

NOT_BLOCKING = ("index", "constraint", "foreign key", "default")


@dataclass(frozen=True)
class Column:
    """A column a migration drops or changes; ``instead`` says what replaces it."""

    table: str
    column: str
    action: str
    instead: str

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class Dependent:
    """An object that uses a dropped or changed column.

    ``tracked`` is False for a function found by the textual search of its body;
    ``blocking`` is False for what the migration itself drops and records (indexes,
    constraints); ``lines`` are the lines of the definition that use the column."""

    migration: str
    column: str
    kind: str
    name: str
    tracked: bool
    blocking: bool
    lines: list[str] = field(default_factory=list)
    advice: str = ""
    definition: str = ""
    search_path: str | None = None  # a function's own search_path setting, if any

    def as_text(self) -> str:
        how = "" if self.tracked else " (textual search of its body)"
        head = f"{self.kind} {self.name} uses {self.column}{how}"
        return "\n".join([head, *(f"    {line}" for line in self.lines), f"    {self.advice}"])


def declared(migration: Migration) -> list[Column]:
    """The columns ``migration`` declares it drops or changes (``-- aicrm:drops``)."""
    checks = migration.path.with_name(f"{migration.path.stem}.checks.sql")
    return parse(checks.read_text("utf-8"), checks.name) if checks.exists() else []


def parse(text: str, source: str | Path = "") -> list[Column]:
    """Parse the ``-- aicrm:drops`` and ``-- aicrm:changes`` lines of a checks file."""
    found: list[Column] = []
    for directive in DIRECTIVE.finditer(text):
        rest = directive.group(2)
        position = 0
        while position < len(rest):
            match = COLUMN.match(rest, position)
            if not match:
                raise UsageError(
                    f"{source}: 'aicrm:{directive.group(1)}' expects table.column "
                    f"(use …), … in lower case; cannot read {rest[position:]!r}."
                )
            found.append(
                Column(match.group(1), match.group(2), directive.group(1), match.group(3) or "")
            )
            position = match.end()
            while position < len(rest) and rest[position] == " ":
                position += 1
    return found


def find(conn: Connection, migrations: list[Migration]) -> list[Dependent]:
    """Every object depending on a column the given migrations drop or change.

    Reads the catalogs only. Objects of aicrm itself are left out."""
    row = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
    publication = PUBLICATION_15 if row and int(row[0]) >= 15 else PUBLICATION_14
    tracked_query = sql.SQL(TRACKED).format(publication=publication)
    found: list[Dependent] = []
    for migration in migrations:
        for col in declared(migration):
            params = {"table": col.table, "column": col.column, "bare": col.table}
            seen: set[str] = set()
            for _catalog, _oid, _type, _identity, kind, name, definition in conn.execute(
                tracked_query, params
            ).fetchall():
                if OWN.search(str(name)) or kind == "foreign key" or str(name) in seen:
                    continue  # aicrm's own, the keys the migration replaces, or seen
                seen.add(str(name))
                found.append(_dependent(migration, col, str(kind), str(name), str(definition)))
            for name, kind, body, path, on_table in conn.execute(TEXTUAL, params).fetchall():
                if str(name) in seen or OWN.search(str(name)):
                    continue
                # A trigger function of the table reads the table's own rows (NEW, OLD):
                # no compatibility view can stand in for them.
                kind = "trigger function" if on_table else kind
                dep = _dependent(migration, col, str(kind), str(name), str(body), tracked=False)
                found.append(_with_search_path(dep, path))
    return found


def _with_search_path(dep: Dependent, setting: object) -> Dependent:
    value = str(setting).split("=", 1)[1] if setting else None
    return Dependent(
        dep.migration,
        dep.column,
        dep.kind,
        dep.name,
        dep.tracked,
        dep.blocking,
        dep.lines,
        dep.advice,
        dep.definition,
        value,
    )


def _dependent(
    migration: Migration, col: Column, kind: str, name: str, definition: str, tracked: bool = True
) -> Dependent:
    word = re.compile(rf"\b{re.escape(col.column)}\b", re.IGNORECASE)
    lines = [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(definition.splitlines(), 1)
        if word.search(line)
    ]
    return Dependent(
        migration.label,
        col.label,
        kind,
        name,
        tracked,
        kind not in NOT_BLOCKING,
        lines,
        advice(kind, name, col, tracked),
        definition,
    )


def advice(kind: str, name: str, col: Column, tracked: bool = True) -> str:
    """What to do about one dependent, in a sentence an operator can follow."""
    instead = f" (use {col.instead})" if col.instead else ""
    again = f"recreate it without {col.label}{instead} after the migration"
    window = "or rerun with --compat-window --rebuild-dependents"
    if kind in ("view", "materialized view"):
        return (
            f"Do: DROP {kind.upper()} {name}; and {again}, {window} to have aicrm recreate "
            "it, unchanged in meaning, on the compatibility views."
        )
    if kind in ("function", "procedure") and not tracked:
        # Not "change it now": an SQL body is checked when created, and the new
        # columns do not exist yet.
        return (
            f"Do: DROP {kind.upper()} {name}; and {again}, or rerun with --compat-window "
            f"--rebuild-dependents, which keeps it working through the window with ALTER "
            f"{kind.upper()} {name} SET search_path = aicrm_compat_000, <its schema>."
        )
    drops = {
        "function": f"DROP FUNCTION {name};",
        "trigger function": f"CREATE OR REPLACE FUNCTION {name} … without {col.column}, before "
        "the migration (a compatibility view cannot stand in for the table's own rows);",
        "procedure": f"DROP PROCEDURE {name};",
        "trigger": f"DROP TRIGGER {name};",
        "rule": f"DROP RULE {name};",
        "policy": f"DROP POLICY {name};",
        "statistics object": f"DROP STATISTICS {name};",
        "generated column": "ALTER TABLE {} DROP COLUMN {};".format(*_two(name, ".")),
        "publication": "ALTER PUBLICATION {} SET TABLE {} …; (a column list or row filter "
        "without {})".format(*_two(name, " ON "), col.column),
    }
    if kind in drops:
        return f"Do: {drops[kind]} and {again}."
    return (
        f"Nothing to do first: the migration drops this {kind} with the column and records "
        f"it for the downgrade; {again} if your queries need it."
    )


def _two(name: str, separator: str) -> tuple[str, str]:
    first, _, second = name.rpartition(separator) if separator == "." else name.partition(separator)
    return first, second


def blocking(found: list[Dependent], rebuilding: bool) -> list[Dependent]:
    """The dependents that stop a run: all blocking ones, but with
    ``--compat-window --rebuild-dependents`` the views, materialized views and
    textually found functions, which the window takes care of."""
    handled = ("view", "materialized view")
    return [
        d
        for d in found
        if d.blocking
        and not (
            rebuilding
            and (d.kind in handled or (not d.tracked and d.kind in ("function", "procedure")))
        )
    ]


__all__ = ["Column", "Dependent", "advice", "blocking", "declared", "find", "parse"]
