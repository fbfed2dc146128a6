"""PostgreSQL errors (SQLSTATEs) translated into aicrm's errors, in one place."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg

from aicrm.errors import (
    AicrmError,
    Conflict,
    ConnectionFailed,
    InvalidInput,
    LockHeld,
    PrerequisiteFailed,
    ReadOnly,
)

# Raised by aicrm's own triggers (migration 002): a converted lead is read-only.
READ_ONLY = "AC001"


def translate(exc: psycopg.Error) -> AicrmError:
    """The aicrm error that says what a database error means for the user."""
    message = _message(exc)
    if exc.sqlstate == READ_ONLY:
        return ReadOnly(f"{message}.")
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
