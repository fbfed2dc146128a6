"""The database layer: settings to connections, the embedded server, client tools."""

from aicrm.db.connection import Connection, Target, connect, redact, target
from aicrm.db.grants import grant

__all__ = ["Connection", "Target", "connect", "grant", "redact", "target"]
