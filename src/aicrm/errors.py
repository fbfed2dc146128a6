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

The hierarchy::

    AicrmError                      exit 1
    ├── MigrationFailed             exit 1  a change failed; the transaction was rolled back
    ├── VerificationFailed          exit 1  a verification check failed; rolled back
    ├── UsageError                  exit 2  the request itself is wrong (bad flag, unknown version)
    ├── ConnectionFailed            exit 2  the server could not be reached or refused the login
    ├── PrerequisiteFailed          exit 2  a tool, privilege or disk space is missing
    ├── LockHeld                    exit 2  another runner holds the migration lock
    ├── DriftDetected               exit 2  an applied migration's file changed since
    ├── UnrecognisedDatabase        exit 2  the database is neither empty nor a known schema
    ├── BackupFailed                exit 2  pg_dump failed or wrote an incomplete file
    ├── InvalidInput                exit 2  a value the CRM cannot accept; nothing was written
    ├── Unauthorized                exit 2  no valid API key (HTTP 401)
    ├── Forbidden                   exit 2  the API key's scope is too narrow (HTTP 403)
    ├── IntegrityRefused            exit 3  blocking anomalies were found; nothing was changed
    │   └── DependentsFound                 objects use what the migration drops (or a window)
    ├── NotFound                    exit 4  no record with that id
    └── Conflict                    exit 5  the change conflicts with data that exists
        ├── DuplicateFound                  the email matches other leads or contacts
        ├── AlreadyConverted                the lead converted to another client
        └── ReadOnly                        a converted lead changes only its ai_* fields

Messages are full sentences: what happened, why, and what to do next. They never
contain a password: connection errors are scrubbed by :func:`aicrm.db.redact`.
"""

from __future__ import annotations

from typing import Any


class AicrmError(Exception):
    """Base of every expected aicrm failure; ``exit_code`` is what the CLI returns."""

    exit_code = 1

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


class ConnectionFailed(AicrmError):
    """The database server could not be reached, or refused the login."""

    exit_code = 2


class PrerequisiteFailed(AicrmError):
    """A prerequisite of the run is missing: a client tool, a privilege, disk space."""

    exit_code = 2


class LockHeld(AicrmError):
    """Another migration runner holds the per-database lock."""

    exit_code = 2


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


class Unauthorized(AicrmError):
    """No valid API key was given."""

    exit_code = 2


class Forbidden(AicrmError):
    """The API key's scope does not allow the request."""

    exit_code = 2


class DependentsFound(IntegrityRefused):
    """Objects use columns a migration drops, or a compatibility window being closed;
    ``details`` lists them. Nothing was changed."""


class NotFound(AicrmError):
    """No record has that id."""

    exit_code = 4


class Conflict(AicrmError):
    """The change conflicts with data that exists; ``details['conflicting']`` names it."""

    exit_code = 5


class DuplicateFound(Conflict):
    """The email matches existing leads or contacts (listed in ``details['matches']``)."""


class AlreadyConverted(Conflict):
    """The lead was already converted, to another client than the one asked for."""


class ReadOnly(Conflict):
    """A converted lead is read-only except for its ai_* fields, and cannot be deleted."""
