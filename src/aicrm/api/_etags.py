"""ETags: a record's version on the wire, and the If-Match / If-None-Match checks.

A record's ETag is its id and its ``updated_at`` in microseconds since the epoch:
exact, so it maps back to the ``expected_updated_at`` of ``store.update``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aicrm.crm import store
from aicrm.crm.records import Record
from aicrm.db import Connection
from aicrm.errors import Stale

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
TAG = re.compile(r'(W/)?"([^"]*)"')


def etag(record_id: uuid.UUID | str, updated_at: datetime) -> str:
    """The ETag of the version ``updated_at`` of ``record_id``."""
    return f'"{record_id}:{(updated_at - EPOCH) // MICROSECOND}"'


def etag_of(record: dict[str, Any]) -> str | None:
    """The ETag of a record given as a dict (``to_dict()``), if it has the fields."""
    try:
        return etag(record["id"], datetime.fromisoformat(str(record["updated_at"])))
    except (KeyError, ValueError, TypeError):
        return None


def versions(header: str, record_id: uuid.UUID) -> set[datetime]:
    """The versions of ``record_id`` that a (strong) If-Match header names."""
    found = set()
    for weak, value in TAG.findall(header):
        name, _, micros = value.rpartition(":")
        if weak or name != str(record_id) or not micros.isdigit() or len(micros) > 18:
            continue
        try:
            found.add(EPOCH + int(micros) * MICROSECOND)
        except OverflowError:
            continue
    return found


def not_modified(if_none_match: str | None, tag: str) -> bool:
    """Whether If-None-Match (weak comparison) names ``tag``."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = tag.removeprefix("W/")
    return any(part.strip().removeprefix("W/") == wanted for part in if_none_match.split(","))


def expected_version(
    conn: Connection, cls: type[Record], record_id: uuid.UUID, if_match: str | None
) -> datetime | None:
    """The ``updated_at`` an If-Match header requires, for ``store.update``'s check.

    None without the header or with ``*``. :class:`Stale` (412) when it names no
    version of this record, or several of which none is current.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    named = versions(if_match, record_id)
    if len(named) == 1:
        return named.pop()
    current = store.get(conn, cls, record_id)
    if current_version(current) in named:
        return current_version(current)
    noun = cls.TABLE[:-1]
    raise Stale(
        f"If-Match does not name the current version of the {noun} {record_id}; read it "
        "again (its ETag is in the response) and reapply your change.",
        details={"conflicting": current.to_dict()},
    )


def current_version(record: Record) -> datetime:
    """The record's ``updated_at`` (every record has one)."""
    value: datetime = getattr(record, "updated_at")  # noqa: B009 - every record has it
    return value


def check_version(record: Record, expected: datetime | None) -> None:
    """:class:`Stale` when ``record`` is not at the ``expected`` version."""
    if expected is not None and current_version(record) != expected:
        noun = record.TABLE[:-1]
        raise Stale(
            f"The {noun} {getattr(record, 'id')} changed since you read it; read it again "  # noqa: B009
            "and reapply your change.",
            details={"conflicting": record.to_dict()},
        )
