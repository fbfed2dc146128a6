"""Record ids: UUIDs, checked before they reach SQL so a typo gets a clear message."""

from __future__ import annotations

import uuid

from aicrm.errors import InvalidInput


def parse(value: str | uuid.UUID, what: str = "id") -> uuid.UUID:
    """The UUID in ``value``; :class:`InvalidInput` when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise InvalidInput(
            f"'{value}' is not a valid {what}: ids are UUIDs such as "
            "3f2b8c1e-7d4a-4f6b-9a51-2c0e8d7b6a10."
        ) from None
