"""Recreating the user's views on a compatibility window (``--rebuild-dependents``).

:func:`capture` reads the views to rebuild (the roots and every view built on them,
each after those it is built on) with their definitions, owners, options, grants,
comments and, for materialized views, indexes; :func:`create` makes one again. The
definitions are read with only the CRM schema in the ``search_path``, so the CRM
tables appear unqualified and resolve, at :func:`create`, to the window's views.
Used by :mod:`aicrm.migrate.compat`; design: docs/compat-window.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from aicrm.db import Connection, script
from aicrm.db.script import catalog

# Views built on a relation (the next level of a rebuild).
VIEWS_ON = """
SELECT DISTINCT r.ev_class
FROM pg_depend AS d JOIN pg_rewrite AS r ON r.oid = d.objid
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = %s AND r.ev_class <> %s
"""

RELATION = """
SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relispopulated,
       coalesce(array_to_string(c.reloptions, ', '), ''), pg_get_viewdef(c.oid),
       obj_description(c.oid, 'pg_class')
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = %s
"""

GRANTS = """
SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
       a.is_grantable
FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl) AS a
WHERE c.oid = %s AND a.grantee <> c.relowner
ORDER BY 2 NULLS FIRST, 1
"""

COLUMN_COMMENTS = """
SELECT a.attname, col_description(a.attrelid, a.attnum)
FROM pg_attribute AS a
WHERE a.attrelid = %s AND a.attnum > 0 AND col_description(a.attrelid, a.attnum) IS NOT NULL
"""

INDEXES = "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s"


@dataclass
class Rebuilt:
    """A view or materialized view dropped before the migration, to recreate after."""

    schema: str
    name: str
    materialized: bool
    owner: str
    populated: bool
    options: str
    definition: str
    comment: str | None
    invoker: bool = False  # security_invoker: reads through the window as the caller
    grants: list[tuple[str, str | None, bool]] = field(default_factory=list)
    column_comments: list[tuple[str, str]] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        kind = "materialized view" if self.materialized else "view"
        return f"{kind} {self.schema}.{self.name}"


def oid_of(conn: Connection, name: str) -> int:
    row = conn.execute("SELECT %s::regclass::oid", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def capture(conn: Connection, crm: str, roots: list[int]) -> list[Rebuilt]:
    """The views to rebuild, each after those it is built on: the roots and every
    view built on them, their definitions read with only the CRM schema in the
    search_path (so the CRM tables appear unqualified and resolve to the window)."""
    depth: dict[int, int] = {}
    frontier = [(oid, 0) for oid in roots]
    while frontier:
        oid, level = frontier.pop()
        if depth.get(oid, -1) >= level:
            continue
        depth[oid] = level
        for (child,) in conn.execute(VIEWS_ON, (oid, oid)).fetchall():
            frontier.append((int(child), level + 1))
    saved = search_path(conn)
    set_search_path(conn, sql.Identifier(crm).as_string(conn))
    try:
        return [_read(conn, oid) for oid in sorted(depth, key=lambda o: depth[o])]
    finally:
        set_search_path(conn, saved)


def _read(conn: Connection, oid: int) -> Rebuilt:
    row = conn.execute(RELATION, (oid,)).fetchone()
    assert row is not None
    schema, name, kind, owner, populated, options, definition, comment = row
    return Rebuilt(
        schema=str(schema),
        name=str(name),
        materialized=kind == "m",
        owner=str(owner),
        populated=bool(populated),
        options=str(options),
        definition=str(definition).strip().rstrip(";"),
        comment=comment,
        invoker=kind == "v"
        and any(
            option.strip() in ("security_invoker=true", "security_invoker=on")
            for option in str(options).split(",")
        ),
        grants=[(str(p), g, bool(w)) for p, g, w in conn.execute(GRANTS, (oid,)).fetchall()],
        column_comments=[(str(a), str(c)) for a, c in conn.execute(COLUMN_COMMENTS, (oid,))],
        indexes=[str(r[0]) for r in conn.execute(INDEXES, (oid,)).fetchall()],
    )


def create(conn: Connection, view: Rebuilt) -> None:
    name = sql.Identifier(view.schema, view.name)
    kind = sql.SQL("MATERIALIZED VIEW") if view.materialized else sql.SQL("VIEW")
    options = sql.SQL(" WITH ({})").format(catalog(view.options)) if view.options else sql.SQL("")
    data = sql.SQL("")
    if view.materialized:
        data = sql.SQL(" WITH DATA") if view.populated else sql.SQL(" WITH NO DATA")
    conn.execute(
        sql.SQL("CREATE {} {}{} AS {}{}").format(
            kind,
            name,
            options,
            catalog(view.definition),
            data,
        )
    )
    if view.owner != current_user(conn):
        conn.execute(
            sql.SQL("ALTER {} {} OWNER TO {}").format(kind, name, sql.Identifier(view.owner))
        )
    for privilege, grantee, grantable in view.grants:
        conn.execute(
            sql.SQL("GRANT {} ON {} TO {}{}").format(
                script.privilege(privilege),
                name,
                sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL(""),
            )
        )
    if view.comment is not None:
        conn.execute(
            sql.SQL("COMMENT ON {} {} IS {}").format(kind, name, sql.Literal(view.comment))
        )
    for column, comment in view.column_comments:
        conn.execute(
            sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                sql.Identifier(view.schema, view.name, column), sql.Literal(comment)
            )
        )
    for index in view.indexes:
        conn.execute(catalog(index))  # pg_get_indexdef's text


def grant_definer_views(conn: Connection, schema: str, role: str) -> None:
    conn.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(role)
        )
    )
    conn.execute(
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(role)
        )
    )


def current_user(conn: Connection) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    return str(row[0]) if row else ""


def search_path(conn: Connection) -> str:
    row = conn.execute("SELECT current_setting('search_path')").fetchone()
    return str(row[0]) if row else ""


def set_search_path(conn: Connection, value: str) -> None:
    conn.execute("SELECT set_config('search_path', %s, true)", (value,))


__all__ = [
    "Rebuilt",
    "capture",
    "create",
    "current_user",
    "grant_definer_views",
    "oid_of",
    "search_path",
    "set_search_path",
]
