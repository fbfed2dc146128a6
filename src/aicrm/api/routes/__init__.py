"""The API's routes, one module per resource, each with its ``router``.

:mod:`~aicrm.api.routes._common` holds what they share (responses, list
parameters, history and as-of); :func:`aicrm.api.create_app` mounts them all.
"""

from aicrm.api.routes import (
    _common as common,
    activities,
    ai,
    assignment_rules,
    clients,
    contacts,
    leads,
    meta,
    reports,
    transfer,
    users,
)

__all__ = [
    "activities",
    "ai",
    "assignment_rules",
    "clients",
    "common",
    "contacts",
    "leads",
    "meta",
    "reports",
    "transfer",
    "users",
]
