"""What the resource routes share: JSON responses with ETags, list parameters, times,
and the bodies of the routes every resource has (history, as-of, the If-Match check of
a change; the read by id is :func:`aicrm.api._reads.get_response`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

from fastapi import Header, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from aicrm.api._etags import check_version, current_version, etag, expected_version
from aicrm.api._reads import HEADER_LIMIT, JSON
from aicrm.crm import history, pagination, store
from aicrm.crm.pagination import Page
from aicrm.crm.records import Record
from aicrm.db import Connection

R = TypeVar("R", bound=Record)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise once, here (the library's ``to_dict()`` is already JSON-able)."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def record_response(record: Record, status: int = 200, location: str | None = None) -> Response:
    """A record, with its ETag (and Location, for a creation)."""
    headers = {"ETag": etag(getattr(record, "id"), current_version(record))}  # noqa: B009
    if location is not None:
        headers["Location"] = location
    return json_response(record.to_dict(), status, headers)


def page_response(page: Page[Any]) -> Response:
    items = [item.to_dict() for item in page.items]
    return json_response({"items": items, "next_cursor": page.next_cursor})


def invalid(field: str, where: str, message: str) -> NoReturn:
    """A 422 that names the field, like the request validation's own."""
    raise RequestValidationError([{"loc": (where, field), "msg": message, "type": "value_error"}])


def utc(moment: datetime | None) -> datetime | None:
    """A time from the client; one without a zone is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def attribute_filters(pairs: list[str] | None) -> dict[str, Any]:
    """``attr=KEY=VALUE`` query parameters; a VALUE that parses as JSON is used as JSON."""
    found: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            invalid("attr", "query", f"'{pair}' is not KEY=VALUE.")
        try:
            found[key.strip()] = json.loads(raw)
        except ValueError:
            found[key.strip()] = raw
    return found


def checked_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        pagination.decode(cursor)
    except Exception:
        invalid("cursor", "query", "Not a cursor aicrm produced; pass a page's next_cursor.")
    return cursor


# Query parameters every list takes.
Limit = Annotated[int, Query(ge=1, le=store.MAX_PAGE, description="Records per page.")]
Cursor = Annotated[
    str | None,
    Query(max_length=200, description="The `next_cursor` of the previous page."),
]
Search = Annotated[
    str | None,
    Query(
        alias="q",
        min_length=1,
        max_length=200,
        description="Full-text search over names, emails and company; each word a prefix.",
    ),
]
CreatedFrom = Annotated[
    datetime | None, Query(description="Created at or after (ISO 8601; UTC if no zone).")
]
CreatedTo = Annotated[datetime | None, Query(description="Created before (ISO 8601).")]
Attr = Annotated[
    list[str] | None,
    Query(
        max_length=20,
        description="Attribute filter KEY=VALUE (JSON values allowed), repeatable; all must match.",
    ),
]
Owner = Annotated[
    str | None,
    Query(min_length=1, max_length=254, description="Only this owner's: a user's id or email."),
]
AsOf = Annotated[datetime, Query(description="The moment (ISO 8601; UTC if no zone).")]
IfMatch = Annotated[
    str | None,
    Header(
        max_length=HEADER_LIMIT,
        description="The record's ETag as last read: the change is refused (412) if the "
        "record changed since.",
    ),
]
IfNoneMatch = Annotated[str | None, Header(max_length=HEADER_LIMIT)]


def list_query(
    *,
    limit: int,
    cursor: str | None,
    search: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    attr: list[str] | None,
) -> store.Query:
    query = store.Query(
        attributes=attribute_filters(attr),
        search=search,
        created_from=utc(created_from),
        created_to=utc(created_to),
        cursor=checked_cursor(cursor),
        limit=limit,
    )
    if search is not None and not store.WORD.findall(search.lower()):
        invalid("q", "query", "The search text has no words to look for.")
    return query


# The bodies of the routes every resource has (history, as-of, the If-Match check of a
# change); each resource keeps its own route functions, whose signatures and docstrings
# make its part of the OpenAPI document.


def history_response(conn: Connection, cls: type[Record], record_id: uuid.UUID) -> Response:
    """The record's timeline, oldest first; 404 when there is no history and no record."""
    entries = history.timeline(conn, cls.TABLE, record_id)
    if not entries:
        store.get(conn, cls, record_id)
    return json_response([e.to_dict() for e in entries])


def as_of_response(
    conn: Connection, cls: type[Record], record_id: uuid.UUID, at: datetime
) -> Response:
    """The record as it was at ``at`` (404 if it did not exist then)."""
    moment = utc(at)
    assert moment is not None
    return json_response(history.as_of(conn, cls, record_id, moment).to_dict())


def locked_current(conn: Connection, cls: type[R], record_id: uuid.UUID, if_match: str | None) -> R:
    """The record, locked for this transaction, after the If-Match check (412)."""
    expected = expected_version(conn, cls, record_id, if_match)
    record = store.get(conn, cls, record_id, lock=True)
    check_version(record, expected)
    return record
