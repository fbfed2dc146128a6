"""The compatibility window: old application code keeps working through a migration.

Anchors: pgroll and Reshape serve the old and the new schema side by side through
views in a versioned schema and ``search_path``; pgroll #179 is why those views are
``security_invoker`` (so the caller's privileges and row-level security apply), which
needs PostgreSQL 15.

``aicrm db migrate --compat-window`` opens, in 001's own transaction, the schema
``aicrm_compat_000`` (``migrations/compat/000_open.sql``): views ``leads``,
``clients`` and ``contacts`` with the columns the tables had before 001, writable for
everything the new structure expresses. An old instance connects with
``options=-csearch_path=aicrm_compat_000,public``.

With ``--rebuild-dependents`` the user's views and materialized views over the
dropped columns (:mod:`aicrm.migrate._dependents`), and the views built on them, are
dropped before 001's steps and recreated after them on the compatibility views, from
their own definitions (so unchanged in meaning), with their owners, options, grants,
comments and, for materialized views, indexes. Functions whose bodies mention the
columns get ``search_path = aicrm_compat_000, <schema>``, printed with the lasting
change to make. :func:`close` ends the window, refusing while anything outside the
schema still uses it. Design: docs/compat-window.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from psycopg import sql

from aicrm.db import Connection, Target, connect
from aicrm.db.errors import translated
from aicrm.db.script import catalog, trusted
from aicrm.errors import DependentsFound, PrerequisiteFailed, UsageError
from aicrm.migrate import _dependents as dependents, _rebuild as recreate
from aicrm.migrate._report import Report, StepTiming
from aicrm.migrate.loader import Migration, split_steps

TABLES = ("leads", "clients", "contacts")

# The columns of the CRM tables, in their order: what the old code sees.
COLUMNS = """
SELECT c.relname, json_agg(a.attname ORDER BY a.attnum)
FROM pg_class AS c
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = ANY (SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)
GROUP BY c.relname
"""

CRM_SCHEMA = "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'leads'::regclass"

OPEN_WINDOWS = """
SELECT n.nspname, obj_description(n.oid, 'pg_namespace')
FROM pg_namespace AS n WHERE n.nspname ~ '^aicrm_compat_[0-9]{3}$' ORDER BY 1
"""

# What outside the window's schema uses it: objects pg_depend records on its views,
# and functions whose search_path or body names the schema.
USERS_OF = """
SELECT DISTINCT CASE WHEN d.classid = 'pg_rewrite'::regclass THEN (
                       SELECT CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END
                              || ' ' || r.ev_class::regclass::text
                       FROM pg_rewrite AS r JOIN pg_class AS v ON v.oid = r.ev_class
                       WHERE r.oid = d.objid)
                     ELSE o.type || ' ' || o.identity END
FROM pg_depend AS d
CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) AS o
WHERE d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
  AND d.refobjid IN (SELECT c.oid FROM pg_class AS c JOIN pg_namespace AS n
                     ON n.oid = c.relnamespace WHERE n.nspname LIKE %(schema)s::text || '%%')
  AND coalesce(o.schema, '') NOT LIKE %(schema)s::text || '%%'
  -- PostgreSQL 15 names no schema for a rule: the window's own views are its rules'.
  AND NOT EXISTS (SELECT 1 FROM pg_rewrite AS r JOIN pg_class AS v ON v.oid = r.ev_class
                  WHERE d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
                    AND v.relnamespace::regnamespace::text LIKE %(schema)s::text || '%%')
UNION
SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END || p.oid::regprocedure::text
FROM pg_proc AS p
WHERE p.pronamespace::regnamespace::text NOT LIKE %(schema)s::text || '%%'
  AND (array_to_string(p.proconfig, ',') LIKE '%%' || %(schema)s::text || '%%'
       OR p.prosrc LIKE '%%' || %(schema)s::text || '%%')
ORDER BY 1
"""

# The routine kinds a dependent function can be, as the keyword ALTER takes.
ROUTINE_KINDS = {"function": sql.SQL("FUNCTION"), "procedure": sql.SQL("PROCEDURE")}

SERVER_MAJOR = "SELECT current_setting('server_version_num')::int / 10000"


def compat_dir() -> Path:
    return Path(str(resources.files("aicrm") / "migrations" / "compat"))


def schema_for(migration: Migration) -> str:
    """The window a migration opens: the schema of the version before it."""
    return f"aicrm_compat_{migration.version - 1:03d}"


def _file(migration: Migration, action: str) -> Path:
    return compat_dir() / f"{migration.version - 1:03d}_{action}.sql"


def has_window(migration: Migration) -> bool:
    return _file(migration, "open").exists()


def refuse_early(
    conn: Connection,
    plan: list[Migration],
    *,
    compat_window: bool,
    rebuild: bool,
    report: Report,
) -> None:
    """Find the plan's dependents before the backup; refuse (exit 3) when some block it.

    Also refuses impossible requests: a window with no migration that opens one,
    --rebuild-dependents without --compat-window, or on a server older than
    PostgreSQL 15. (An online run opens its window in its switch.)"""
    if rebuild and not compat_window:
        raise UsageError(
            "--rebuild-dependents recreates views on the compatibility views: it needs "
            "--compat-window too."
        )
    if compat_window:
        if not any(has_window(m) for m in plan):
            raise UsageError(
                "--compat-window opens a window with migration 001, which is not pending "
                "here; run without it (see 'aicrm db status' for an open window)."
            )
        row = conn.execute(SERVER_MAJOR).fetchone()
        if row is None or int(row[0]) < 15:
            raise PrerequisiteFailed(
                "The compatibility window needs PostgreSQL 15 or newer: its views must be "
                "security_invoker so that privileges and row-level security still apply "
                "(pgroll #179). Upgrade the server, or migrate without --compat-window."
            )
    found = report.dependents = dependents.find(conn, plan)
    stopping = dependents.blocking(found, rebuild)
    if stopping:
        names = ", ".join(f"{d.kind} {d.name} ({d.column})" for d in stopping)
        fixable = all(
            d.kind in ("view", "materialized view")
            or (not d.tracked and d.kind in ("function", "procedure"))
            for d in stopping
        )
        rerun = ""
        if fixable and not rebuild:
            # Either mode: an online run opens the window in its switch.
            rerun = ", or rerun with --compat-window --rebuild-dependents"
        raise DependentsFound(
            f"{len(stopping)} object(s) use columns that the migration drops: {names}. "
            "Nothing was changed and no backup was taken. Drop or change each as the "
            f"report says (it shows the line that uses the column){rerun}.",
            details={"dependents": found},
        )


@dataclass
class Window:
    """A window being opened inside a migration's transaction (see :func:`prepare`)."""

    migration: Migration
    crm: str
    columns: dict[str, list[str]]
    rebuilt: list[recreate.Rebuilt]
    functions: list[dependents.Dependent]
    notes: list[str] = field(default_factory=list)

    def open(self, conn: Connection, report: Report) -> list[str]:
        """After the migration's steps: create the window, recreate the dropped views
        on it, and give the functions the window's search_path. Returns notes (the
        report gets a step of its own, so that a failure here is named as such)."""
        started = time.monotonic()
        step = f"open the compatibility window {schema_for(self.migration)}"
        report.steps.append(StepTiming(self.migration.label, step, 0.0))
        notes = self._open(conn)
        report.steps[-1] = StepTiming(self.migration.label, step, time.monotonic() - started)
        return notes

    def _open(self, conn: Connection) -> list[str]:
        conn.execute(
            "SELECT set_config(%s, %s, true)",
            (f"aicrm.compat_{self.migration.version - 1:03d}_columns", json.dumps(self.columns)),
        )
        for step in split_steps(_file(self.migration, "open").read_text("utf-8"), "open"):
            conn.execute(trusted(step.sql))  # shipped file
        schema = schema_for(self.migration)
        self.notes.append(
            f"compatibility window {schema} opened: old code connects with "
            f"options=-csearch_path={schema},{self.crm}"
        )
        saved = recreate.search_path(conn)
        try:
            for view in self.rebuilt:
                # A view that read as its owner keeps doing so (the definer views); a
                # security_invoker one reads as its caller (the window's own views).
                window = schema if view.invoker else f"{schema}_definer"
                if not view.invoker and view.owner != recreate.current_user(conn):
                    recreate.grant_definer_views(conn, window, view.owner)
                where = sql.SQL("{}, {}").format(sql.Identifier(window), sql.Identifier(self.crm))
                recreate.set_search_path(conn, where.as_string(conn))
                recreate.create(conn, view)
                self.notes.append(f"recreated {view.label} on {window}")
        finally:
            recreate.set_search_path(conn, saved)
        for fn in self.functions:
            rest = catalog(fn.search_path) if fn.search_path else sql.Identifier(self.crm)
            statement = sql.SQL("ALTER {} {} SET search_path = {}, {}").format(
                ROUTINE_KINDS[fn.kind], catalog(fn.name), sql.Identifier(schema), rest
            )
            conn.execute(statement)
            self.notes.append(
                f"{fn.kind} {fn.name}: {statement.as_string(conn)} (done); lasting change, "
                f"before closing the window: {fn.advice.split(';')[0].removeprefix('Do: ')}"
            )
        return self.notes


def old_columns(conn: Connection) -> dict[str, list[str]]:
    """The columns of leads, clients and contacts as they are now, in order: what old
    code sees, read before the migration that opens the window changes them."""
    return {str(r[0]): list(r[1]) for r in conn.execute(COLUMNS, (list(TABLES),)).fetchall()}


def prepare(
    conn: Connection,
    migration: Migration,
    *,
    compat_window: bool,
    rebuild: bool,
    columns: dict[str, list[str]] | None = None,
) -> Window | None:
    """Before ``migration``'s steps, in its transaction: record the columns the old
    code sees (``columns``, as :func:`old_columns` read them before an online run's
    expand; else now) and, with ``rebuild``, drop the views to recreate. None when no
    window is to be opened with this migration."""
    if not compat_window or not has_window(migration):
        return None
    row = conn.execute(CRM_SCHEMA).fetchone()
    assert row is not None
    crm = str(row[0]).strip('"')
    columns = columns if columns is not None else old_columns(conn)
    rebuilt: list[recreate.Rebuilt] = []
    functions: list[dependents.Dependent] = []
    if rebuild:
        found = dependents.find(conn, [migration])
        roots = [d for d in found if d.kind in ("view", "materialized view")]
        functions = [d for d in found if not d.tracked and d.kind in ("function", "procedure")]
        functions = list({d.name: d for d in functions}.values())
        rebuilt = recreate.capture(conn, crm, [recreate.oid_of(conn, d.name) for d in roots])
        for view in reversed(rebuilt):
            conn.execute(
                sql.SQL("DROP {} {}").format(
                    sql.SQL("MATERIALIZED VIEW") if view.materialized else sql.SQL("VIEW"),
                    sql.Identifier(view.schema, view.name),
                )
            )
    return Window(migration, crm, columns, rebuilt, functions)


def windows(conn: Connection) -> list[dict[str, Any]]:
    """The open windows: schema, comment and what outside it uses it (read-only)."""
    found = []
    for schema, comment in conn.execute(OPEN_WINDOWS).fetchall():
        users = [str(r[0]) for r in conn.execute(USERS_OF, {"schema": schema}).fetchall()]
        found.append({"schema": str(schema), "comment": comment, "used_by": users})
    return found


def refuse_downgrade(conn: Connection, version: int) -> None:
    """Refuse a downgrade below the migration that opened a window still open."""
    for window in windows(conn):
        opened_by = int(str(window["schema"]).rsplit("_", 1)[1]) + 1
        if version < opened_by:
            raise UsageError(
                f"The compatibility window {window['schema']} is open and its views need the "
                f"columns of migration {opened_by:03d}. Nothing was changed. Close it first "
                "('aicrm db compat close'), then downgrade."
            )


@translated()
def close(where: Target, schema: str | None = None) -> str:
    """End the compatibility window (the only one open, or ``schema``).

    Raises :class:`UsageError` when none is open, :class:`DependentsFound` (exit 3,
    nothing changed) while objects outside the window still use it, naming them."""
    with connect(where, autocommit=True, application_name="aicrm compat close") as conn:
        open_now = windows(conn)
        chosen = [w for w in open_now if schema in (None, w["schema"])]
        if not chosen:
            raise UsageError(
                "No compatibility window is open"
                + (f" named {schema}" if schema else "")
                + "; 'aicrm db status' lists the open ones."
            )
        window = chosen[0]
        if window["used_by"]:
            raise DependentsFound(
                f"The compatibility window {window['schema']} is still used by "
                f"{', '.join(window['used_by'])}. Nothing was changed. Recreate each on the "
                "tables' new columns (CREATE OR REPLACE VIEW with converted_to_client_id, a "
                "materialized view dropped and created again; a function without "
                f"{window['schema']} in its search_path), then close the window again.",
                details={"used_by": window["used_by"]},
            )
        version = str(window["schema"]).rsplit("_", 1)[1]
        path = compat_dir() / f"{version}_close.sql"
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '5s'")
            for step in split_steps(path.read_text("utf-8"), path.name):
                conn.execute(trusted(step.sql))  # shipped file
        return str(window["schema"])


__all__ = [
    "Window",
    "close",
    "has_window",
    "old_columns",
    "prepare",
    "refuse_downgrade",
    "refuse_early",
    "schema_for",
    "windows",
]
