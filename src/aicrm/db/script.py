"""Where text that is not a Python literal becomes SQL: the one module allowed to do it.

Everywhere else a query is a literal, a named module-level constant, or psycopg's
``sql.SQL(<literal>).format(sql.Identifier(...))``, so ruff's S608 and
tests/test_layout.py can check it. Two kinds of text cannot be written that way and
come here instead, each with the reason it is safe:

* :func:`trusted`: the statements of aicrm's own ``.sql`` files (migration steps,
  online forms, compatibility windows, checks files), read from the installed package;
* :func:`catalog`: text PostgreSQL produced itself about an object that exists
  (``pg_get_viewdef``, ``pg_get_indexdef``, ``regprocedure``, ``reloptions``,
  ``proconfig``), replayed to recreate or alter that object; the server quoted it.

Neither ever receives user input: a value from a user goes in as a query parameter,
a name from a user through ``sql.Identifier``.
"""

from __future__ import annotations

from psycopg import sql

__all__ = ["PRIVILEGES", "catalog", "privilege", "trusted"]

# The table privileges PostgreSQL's catalogs spell (aclexplode's privilege_type), as
# keywords; anything else is refused rather than pasted into a GRANT.
PRIVILEGES: dict[str, sql.SQL] = {
    "SELECT": sql.SQL("SELECT"),
    "INSERT": sql.SQL("INSERT"),
    "UPDATE": sql.SQL("UPDATE"),
    "DELETE": sql.SQL("DELETE"),
    "TRUNCATE": sql.SQL("TRUNCATE"),
    "REFERENCES": sql.SQL("REFERENCES"),
    "TRIGGER": sql.SQL("TRIGGER"),
    "MAINTAIN": sql.SQL("MAINTAIN"),
}


def trusted(text: str) -> sql.SQL:
    """A statement of one of aicrm's shipped ``.sql`` files, as a query.

    Safe because the text is read from the package's own migration, online, compat and
    checks files (reviewed code, installed with aicrm), never from user input.
    """
    return sql.SQL(text)


def catalog(text: str) -> sql.SQL:
    """Text PostgreSQL deparsed or quoted itself (a view or index definition, a
    ``regprocedure``, reloptions, a function's search_path), replayed as SQL.

    Safe because the server produced it from an object that already exists and quotes
    every name in it; callers take it only from the catalogs.
    """
    return sql.SQL(text)


def privilege(name: str) -> sql.SQL:
    """The keyword of a table privilege as the catalogs name it; ValueError otherwise."""
    try:
        return PRIVILEGES[name.upper()]
    except KeyError:
        raise ValueError(f"not a table privilege: {name!r}") from None
