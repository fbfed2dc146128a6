"""The database layer: settings to connections, the embedded server, client tools,
and where read-only work goes (:mod:`aicrm.db.routing`)."""

from aicrm.db.connection import Connection, Target, connect, redact, target
from aicrm.db.grants import grant
from aicrm.db.routing import (
    Router,
    connect_read,
    hidden_replicas,
    replica_lag,
    replication_lag,
    wait_for_replicas,
)

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
