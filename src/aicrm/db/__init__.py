"""The database layer: settings to connections, the embedded server, client tools,
and where read-only work goes (:mod:`aicrm.db._routing`)."""

from aicrm.db._connection import Connection, Target, connect, redact, target
from aicrm.db._routing import (
    Router,
    connect_read,
    hidden_replicas,
    replica_lag,
    replication_lag,
    wait_for_replicas,
)
from aicrm.db.grants import grant

__all__ = [
    "Connection",
    "Router",
    "Target",
    "connect",
    "connect_read",
    "grant",
    "hidden_replicas",
    "redact",
    "replica_lag",
    "replication_lag",
    "target",
    "wait_for_replicas",
]
