"""PostgreSQL errors (SQLSTATEs) translated into aicrm's errors, in one place.

The boundary: psycopg's errors never leave a public aicrm call. Whatever runs on a
connection does so inside :func:`translated` (``crm.session.transaction`` for
writes; the interfaces' connection helpers, ``cli.common.database``, the API's
``connections.get_conn`` and the MCP ``Backend.call``, for everything else), which turns any
``psycopg.Error`` into the :class:`aicrm.AicrmError` that :func:`translate` gives,
chained to it (``__cause__``). So the interfaces catch :class:`AicrmError` only, as
httpx's ``map_httpcore_exceptions`` lets only httpx's errors out. A module that has
its own words for one error (the migration engine, the CSV import's COPY refusals)
passes ``into`` instead of catching. Only ``db/`` and the engine's lock retries
(which must see ``LockNotAvailable`` to retry) catch psycopg's errors themselves;
``tests/test_errors_boundary.py`` checks that.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg

from aicrm.db._connection import redact
from aicrm.errors import (
    AicrmError,
    AlreadyConverted,
    Conflict,
    ConnectionFailed,
    DuplicateFound,
    InvalidInput,
    LockHeld,
    NotFound,
    PrerequisiteFailed,
    ReadOnly,
)

# Raised by aicrm's own triggers (migration 002): a converted lead is read-only.
READ_ONLY = "AC001"
# Raised by aicrm_convert_lead (migration 006), with the whole user-facing message
# and, in DETAIL, a JSON object that becomes the error's ``details``.
NOT_FOUND = "AC002"
ALREADY_CONVERTED = "AC003"
DUPLICATE = "AC004"
OWN_ERRORS: dict[str, type[AicrmError]] = {
    NOT_FOUND: NotFound,
    ALREADY_CONVERTED: AlreadyConverted,
    DUPLICATE: DuplicateFound,
}


# SQLSTATE class 54, program limit exceeded: a value too large or too deep for the
# database (psycopg files it under OperationalError, which is not a connection's).
PROGRAM_LIMIT = "54"

Into = Callable[[psycopg.Error], AicrmError | None]


@contextmanager
def translated(into: Into | None = None) -> Iterator[None]:
    """The boundary: a ``psycopg.Error`` raised inside leaves as an :class:`AicrmError`.

    ``into`` may word an error itself (return the aicrm error) or leave it to
    :func:`translate` (return None). The aicrm error is chained to the database's
    (``__cause__``). Usable as a decorator too. Raises :class:`AicrmError`.
    """
    try:
        yield
    except psycopg.Error as exc:
        raise ((into(exc) if into is not None else None) or translate(exc)) from exc


def primary_message(exc: psycopg.Error, *, detail: bool = False) -> str:
    """The server's primary message, else the error's first line (else its class
    name); with ``detail``, the server's DETAIL in parentheses after it."""
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    text = str(exc)
    message = primary or (text.splitlines()[0] if text else type(exc).__name__)
    extra = diag.message_detail if detail and diag is not None else None
    return message + (f" ({extra})" if extra else "")


def translate(exc: psycopg.Error) -> AicrmError:
    """The aicrm error that says what a database error means for the user."""
    message = redact(primary_message(exc), ()).rstrip(".")
    if exc.sqlstate == READ_ONLY:
        return ReadOnly(f"{message}.")
    if exc.sqlstate in OWN_ERRORS:
        return OWN_ERRORS[exc.sqlstate](f"{message}.", details=_details(exc))
    if isinstance(exc, pg.UniqueViolation | pg.ForeignKeyViolation):
        return Conflict(f"The change conflicts with existing data: {message}.")
    if isinstance(exc, pg.CheckViolation | pg.NotNullViolation | pg.DataError):
        return InvalidInput(f"The database rejected the value: {message}.")
    if isinstance(exc, pg.InsufficientPrivilege):
        return PrerequisiteFailed(
            f"The database refused: {message}. Connect as a user with the privilege "
            "(usually the owner of the CRM's tables)."
        )
    if (exc.sqlstate or "").startswith(PROGRAM_LIMIT):
        return InvalidInput(f"A value is too large for the database: {message}.")
    if isinstance(exc, pg.LockNotAvailable):
        return LockHeld(f"A lock could not be taken in time: {message}. Try again later.")
    if isinstance(exc, psycopg.OperationalError):
        return ConnectionFailed(
            f"The connection to the database failed: {message}. Check that the server is "
            "running, then try again."
        )
    return AicrmError(f"The database reported an error: {message}.")


def _details(exc: psycopg.Error) -> dict[str, Any]:
    """The JSON object aicrm's functions put in DETAIL; empty when there is none."""
    diag = getattr(exc, "diag", None)
    detail = diag.message_detail if diag is not None else None
    if not detail or not detail.startswith("{"):
        return {}
    try:
        found = json.loads(detail)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
