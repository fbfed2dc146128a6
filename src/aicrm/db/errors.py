"""PostgreSQL errors (SQLSTATEs) translated into aicrm's errors, in one place."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import errors as pg

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


def translate(exc: psycopg.Error) -> AicrmError:
    """The aicrm error that says what a database error means for the user."""
    message = _message(exc)
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
    if isinstance(exc, pg.LockNotAvailable):
        return LockHeld(f"A lock could not be taken in time: {message}. Try again later.")
    if isinstance(exc, psycopg.OperationalError):
        return ConnectionFailed(
            f"The connection to the database failed: {message}. Check that the server is "
            "running, then try again."
        )
    return AicrmError(f"The database reported an error: {message}.")


def _message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    text = primary or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return text.rstrip(".")


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
