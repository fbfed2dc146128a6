"""Reading and writing records of any of the three tables, and listing them.

The SQL is composed with ``psycopg.sql`` from the record class's own column list;
every value travels as a parameter.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from psycopg import sql
from psycopg.types.json import Jsonb

from aicrm.crm import ids, pagination
from aicrm.crm.pagination import Page
from aicrm.crm.records import Record
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import (
    InvalidInput,
    NotFound,
    Stale as Stale,  # re-exported: it lived here before errors.py
)

R = TypeVar("R", bound=Record)

MAX_PAGE = 1000
JSON_COLUMNS = ("ai_annotations", "attributes")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# Words for full-text search: what PostgreSQL's 'simple' parser splits on.
WORD = re.compile(r"[\w]+", re.UNICODE)

# The text-search document of each table, as its expression index spells it.
DOCUMENTS: dict[str, sql.Composable] = {
    "leads": sql.SQL("aicrm_person_document(first_name, last_name, email, company_name)"),
    "contacts": sql.SQL("aicrm_person_document(first_name, last_name, email, NULL)"),
    "clients": sql.SQL("aicrm_client_document(name, industry)"),
}


@dataclass
class Query:
    """Filters for listing; every one is optional and they combine with AND.

    ``attributes`` matches JSONB ``attributes`` keys to values (GIN-indexed
    containment); ``search`` is full-text over names, emails and company, each word
    a prefix; ``where`` holds column = value pairs for plain columns.
    """

    where: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    search: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    cursor: str | None = None
    limit: int = 50


def columns(cls: type[Record]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in cls.COLUMNS)


def _value(column: str, value: Any) -> Any:
    return Jsonb(value) if column in JSON_COLUMNS and value is not None else value


def check_email(email: str | None) -> str | None:
    """The email, trimmed; :class:`InvalidInput` when it is not an address."""
    if email is None:
        return None
    email = email.strip()
    if not EMAIL.match(email):
        raise InvalidInput(f"'{email}' is not a valid email address (expected name@domain.tld).")
    return email


@translated()
def get(conn: Connection, cls: type[R], record_id: str | uuid.UUID, *, lock: bool = False) -> R:
    """The record with that id; :class:`NotFound` when there is none."""
    key = ids.parse(record_id, f"{cls.TABLE[:-1]} id")
    query = sql.SQL("SELECT {} FROM {} WHERE id = %s{}").format(
        columns(cls), sql.Identifier(cls.TABLE), sql.SQL(" FOR UPDATE") if lock else sql.SQL("")
    )
    row = conn.execute(query, (key,)).fetchone()
    if row is None:
        raise NotFound(f"No {cls.TABLE[:-1]} has id {key}.")
    record: R = cls.from_row(row)
    return record


@translated()
def insert(conn: Connection, cls: type[R], values: dict[str, Any]) -> R:
    """Insert one record from column values (unknown columns are refused)."""
    _known(cls, values)
    names = list(values)
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
        sql.Identifier(cls.TABLE),
        sql.SQL(", ").join(sql.Identifier(n) for n in names),
        sql.SQL(", ").join(sql.Placeholder() for _ in names),
        columns(cls),
    )
    row = conn.execute(query, [_value(n, values[n]) for n in names]).fetchone()
    assert row is not None
    record: R = cls.from_row(row)
    return record


@translated()
def update(
    conn: Connection,
    cls: type[R],
    record_id: str | uuid.UUID,
    values: dict[str, Any],
    *,
    expected_updated_at: datetime | None = None,
) -> R:
    """Change some columns of one record and stamp ``updated_at``.

    With ``expected_updated_at``, refuses (:class:`Stale`) when the record changed
    since. Raises :class:`NotFound` for an unknown id.
    """
    key = ids.parse(record_id, f"{cls.TABLE[:-1]} id")
    _known(cls, values)
    if not values:
        return get(conn, cls, key)
    names = list(values)
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(n), sql.Placeholder()) for n in names
    )
    guard = sql.SQL(" AND updated_at = %s") if expected_updated_at is not None else sql.SQL("")
    query = sql.SQL("UPDATE {} SET {}, updated_at = now() WHERE id = %s{} RETURNING {}").format(
        sql.Identifier(cls.TABLE), assignments, guard, columns(cls)
    )
    params: list[Any] = [_value(n, values[n]) for n in names] + [key]
    if expected_updated_at is not None:
        params.append(expected_updated_at)
    row = conn.execute(query, params).fetchone()
    if row is None:
        current = get(conn, cls, key)  # NotFound when it does not exist
        raise Stale(
            f"The {cls.TABLE[:-1]} {key} changed since you read it; read it again and "
            "reapply your change.",
            details={"conflicting": current.to_dict()},
        )
    record: R = cls.from_row(row)
    return record


def _known(cls: type[Record], values: dict[str, Any]) -> None:
    unknown = sorted(set(values) - set(cls.COLUMNS))
    if unknown:
        raise InvalidInput(f"Unknown field(s) for a {cls.TABLE[:-1]}: {', '.join(unknown)}.")


def conditions(cls: type[Record], query: Query) -> tuple[list[sql.Composable], list[Any]]:
    """The conditions (ANDed) and their parameters for ``query``."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for name, value in query.where.items():
        if name not in cls.COLUMNS:
            raise InvalidInput(f"Cannot filter {cls.TABLE} by unknown field '{name}'.")
        if value is None:
            parts.append(sql.SQL("{} IS NULL").format(sql.Identifier(name)))
        elif isinstance(value, tuple):  # one of several values
            parts.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(name)))
            params.append(list(value))
        else:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
            params.append(value)
    if query.attributes:
        parts.append(sql.SQL("attributes @> %s"))
        params.append(Jsonb(query.attributes))
    if query.search:
        words = WORD.findall(query.search.lower())
        if not words:
            raise InvalidInput("The search text has no words to look for.")
        parts.append(
            sql.SQL(
                "{} @@ to_tsquery('simple', "
                "array_to_string(ARRAY(SELECT quote_literal(w) || ':*' FROM unnest(%s::text[]) w),"
                " ' & '))"
            ).format(DOCUMENTS[cls.TABLE])
        )
        params.append(words)
    if query.created_from is not None:
        parts.append(sql.SQL("created_at >= %s"))
        params.append(query.created_from)
    if query.created_to is not None:
        parts.append(sql.SQL("created_at < %s"))
        params.append(query.created_to)
    return parts, params


def where_sql(parts: list[sql.Composable]) -> sql.Composable:
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts) if parts else sql.SQL("")


@translated()
def list_records(conn: Connection, cls: type[R], query: Query) -> Page[R]:
    """A page of records, newest first, with a cursor for the next page."""
    if not 1 <= query.limit <= MAX_PAGE:
        raise InvalidInput(f"The page size must be between 1 and {MAX_PAGE}.")
    parts, params = conditions(cls, query)
    if query.cursor:
        created, last_id = pagination.decode(query.cursor)
        parts.append(sql.SQL("(created_at, id) < (%s, %s)"))
        params += [created, last_id]
    statement = sql.SQL("SELECT {} FROM {}{} ORDER BY created_at DESC, id DESC LIMIT %s").format(
        columns(cls), sql.Identifier(cls.TABLE), where_sql(parts)
    )
    rows = conn.execute(statement, [*params, query.limit + 1]).fetchall()
    items: list[R] = [cls.from_row(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    cursor = None
    if more and items:
        last = items[-1]
        cursor = pagination.encode(getattr(last, "created_at"), getattr(last, "id"))  # noqa: B009
    return Page(items, cursor)
