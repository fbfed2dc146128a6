"""Every error aicrm raises on purpose, and the exit code each one means.

The exit codes are a contract that operators script against::

    0  applied, or nothing to do
    1  failed and rolled back
    2  usage, prerequisite, connection or lock error (nothing was changed)
    3  an integrity check refused the migration (nothing was changed)

and for the CRM's own commands::

    2  invalid input (bad id, email, status, CSV): nothing was written
    4  the record does not exist
    5  a conflict: a duplicate, an already converted lead, a read-only record

The hierarchy, with each error's exit code and the HTTP status the API and the
dashboard answer it with (``http_status``; 500 when none is given)::

    AicrmError                      exit 1  500
    ├── MigrationFailed             exit 1  500  a change failed; the transaction was rolled back
    ├── VerificationFailed          exit 1  500  a verification check failed; rolled back
    ├── UsageError                  exit 2  409  the request itself is wrong (bad flag, unknown
    │                                            version), or not possible in the database's state
    ├── ConnectionFailed            exit 2  503  the server could not be reached or refused
    │                                            the login
    ├── PrerequisiteFailed          exit 2  500  a tool, privilege or disk space is missing
    ├── LockHeld                    exit 2  503  another runner holds the migration lock, or a
    │                                            lock could not be taken in time
    ├── DriftDetected               exit 2  500  an applied migration's file changed since
    ├── UnrecognisedDatabase        exit 2  500  the database is neither empty nor a known schema
    ├── BackupFailed                exit 2  500  pg_dump failed or wrote an incomplete file
    ├── InvalidInput                exit 2  422  a value the CRM cannot accept; nothing was written
    ├── Unauthorized                exit 2  401  no valid API key
    ├── Forbidden                   exit 2  403  the API key's scope is too narrow
    ├── IntegrityRefused            exit 3  500  blocking anomalies were found; nothing was changed
    │   └── DependentsFound                      objects use what the migration drops (or a window)
    ├── NotFound                    exit 4  404  no record with that id
    └── Conflict                    exit 5  409  the change conflicts with data that exists
        ├── DuplicateFound                       the email matches other leads or contacts
        ├── AlreadyConverted                     the lead converted to another client
        ├── ReadOnly                             a converted lead changes only its ai_* fields
        └── Stale                           412  the record changed since the caller read it

``problem`` names the error's kind in the API's problem documents
(``https://aicrm.dev/problems/<problem>``). Database errors become these errors at
one boundary, :func:`aicrm.db.errors.translated`.

Messages are full sentences: what happened, why, and what to do next. They never
contain a password: connection errors are scrubbed by :func:`aicrm.db.redact`.
"""

from __future__ import annotations

from typing import Any


class AicrmError(Exception):
    """Base of every expected aicrm failure; ``exit_code`` is what the CLI returns."""

    exit_code = 1
    http_status = 500
    problem = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class MigrationFailed(AicrmError):
    """A migration statement failed; its transaction was rolled back."""


class VerificationFailed(AicrmError):
    """A verification check failed after the changes; the transaction was rolled back."""


class UsageError(AicrmError):
    """The request cannot be carried out as asked (unknown version, bad option)."""

    exit_code = 2
    http_status = 409
    problem = "not-possible"


class ConnectionFailed(AicrmError):
    """The database server could not be reached, or refused the login."""

    exit_code = 2
    http_status = 503
    problem = "database-unavailable"


class PrerequisiteFailed(AicrmError):
    """A prerequisite of the run is missing: a client tool, a privilege, disk space."""

    exit_code = 2


class LockHeld(AicrmError):
    """Another migration runner holds the per-database lock, or a lock could not be
    taken in time."""

    exit_code = 2
    http_status = 503
    problem = "busy"


class DriftDetected(AicrmError):
    """An applied migration's file no longer matches the checksum in the ledger."""

    exit_code = 2


class UnrecognisedDatabase(AicrmError):
    """The database holds tables that are neither empty nor a schema aicrm knows."""

    exit_code = 2


class BackupFailed(AicrmError):
    """pg_dump failed, or the backup it wrote is incomplete."""

    exit_code = 2


class IntegrityRefused(AicrmError):
    """Blocking integrity anomalies were found; nothing was changed."""

    exit_code = 3


class InvalidInput(AicrmError):
    """A value the CRM cannot accept (malformed id, email or status; a bad CSV)."""

    exit_code = 2
    http_status = 422
    problem = "invalid-input"


class Unauthorized(AicrmError):
    """No valid API key was given."""

    exit_code = 2
    http_status = 401
    problem = "unauthorized"


class Forbidden(AicrmError):
    """The API key's scope does not allow the request."""

    exit_code = 2
    http_status = 403
    problem = "forbidden"


class DependentsFound(IntegrityRefused):
    """Objects use columns a migration drops, or a compatibility window being closed;
    ``details`` lists them. Nothing was changed."""


class NotFound(AicrmError):
    """No record has that id."""

    exit_code = 4
    http_status = 404
    problem = "not-found"


class Conflict(AicrmError):
    """The change conflicts with data that exists; ``details['conflicting']`` names it."""

    exit_code = 5
    http_status = 409
    problem = "conflict"


class DuplicateFound(Conflict):
    """The email matches existing leads or contacts (listed in ``details['matches']``)."""


class AlreadyConverted(Conflict):
    """The lead was already converted, to another client than the one asked for."""


class ReadOnly(Conflict):
    """A converted lead is read-only except for its ai_* fields, and cannot be deleted."""


class Stale(Conflict):
    """The record changed since the version the caller last read (optimistic
    locking); ``details['conflicting']`` holds the current record."""

    http_status = 412
    problem = "stale-update"
