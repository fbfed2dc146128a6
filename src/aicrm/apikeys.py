"""API keys: who may call the REST API and the MCP server, and with what scope.

A key is shown once, when it is created: ``aicrm_<prefix>_<secret>``. The database
keeps its prefix (to find it) and the SHA-256 of the whole token (to check it);
scopes are ordered ``read`` < ``write`` < ``admin``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized

SCOPES = ("read", "write", "admin")
TOKEN = re.compile(r"^aicrm_([a-z0-9]{10})_([A-Za-z0-9_-]{20,})$")
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

INSERT = """
INSERT INTO api_keys (name, scope, prefix, key_hash, user_id) VALUES (%s, %s, %s, %s, %s)
RETURNING id, name, scope, prefix, created_at, last_used_at, revoked_at
"""
BY_PREFIX = """
SELECT id, name, scope, prefix, created_at, last_used_at, revoked_at, key_hash
FROM api_keys WHERE prefix = %s
"""
TOUCH = "UPDATE api_keys SET last_used_at = now() WHERE id = %s"
# The user a key belongs to (migration 012), for "my tasks" and dashboard sign-ins.
USER_OF = "SELECT user_id FROM api_keys WHERE id = %s"
LIST = """
SELECT id, name, scope, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY name
"""
REVOKE = """
UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL
RETURNING id, name, scope, prefix, created_at, last_used_at, revoked_at
"""


@dataclass(frozen=True)
class ApiKey:
    id: uuid.UUID
    name: str
    scope: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "name": self.name,
            "scope": self.scope,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def digest(token: str) -> str:
    """The hash a token is stored (and looked up) by: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@translated()
def create_key(
    conn: Connection, name: str, scope: str, user_id: uuid.UUID | None = None
) -> tuple[ApiKey, str]:
    """Create a key, belonging to the user ``user_id`` if given; returns it with its
    token, which is never shown again.

    Raises :class:`InvalidInput` for a bad name or scope, :class:`Conflict` for a
    name already taken.
    """
    if scope not in SCOPES:
        raise InvalidInput(f"'{scope}' is not a scope; use one of {', '.join(SCOPES)}.")
    if not NAME.match(name):
        raise InvalidInput(
            "A key name is 1 to 64 letters, digits or the characters _ . @ - (it is "
            "recorded as the actor of every change made with the key)."
        )
    prefix = secrets.token_hex(5)
    token = f"aicrm_{prefix}_{secrets.token_urlsafe(32)}"
    exists = conn.execute("SELECT 1 FROM api_keys WHERE name = %s", (name,)).fetchone()
    if exists:
        raise Conflict(f"An API key named {name} exists already; revoke it or pick another name.")
    row = conn.execute(INSERT, (name, scope, prefix, digest(token), user_id)).fetchone()
    assert row is not None
    return ApiKey(*row), token


@translated()
def authenticate(conn: Connection, token: str | None) -> ApiKey:
    """The live key a token belongs to. Raises :class:`Unauthorized` for a missing,
    malformed, unknown or revoked token (one message for all, to tell nothing)."""
    match = TOKEN.match(token or "")
    refused = Unauthorized("A valid API key is required (header: Authorization: Bearer KEY).")
    if not match:
        raise refused
    row = conn.execute(BY_PREFIX, (match.group(1),)).fetchone()
    if row is None or not hmac.compare_digest(row[7], digest(token or "")) or row[6] is not None:
        raise refused
    conn.execute(TOUCH, (row[0],))
    return ApiKey(*row[:7])


@translated()
def user_of(conn: Connection, key: ApiKey) -> uuid.UUID | None:
    """The id of the user ``key`` belongs to; None for a key of nobody."""
    row = conn.execute(USER_OF, (key.id,)).fetchone()
    return row[0] if row else None


def require(key: ApiKey, scope: str) -> None:
    """Raise :class:`Forbidden` unless ``key`` has ``scope`` (or a wider one)."""
    if not key.allows(scope):
        raise Forbidden(
            f"The API key {key.name} has scope '{key.scope}'; this needs '{scope}'. "
            f"Create a key with --scope {scope}."
        )


@translated()
def list_keys(conn: Connection) -> list[ApiKey]:
    """Every key, revoked ones included (without their secrets, which are not kept)."""
    return [ApiKey(*row) for row in conn.execute(LIST).fetchall()]


@translated()
def revoke_key(conn: Connection, name: str) -> ApiKey:
    """Revoke a key by name; :class:`NotFound` when there is no live key of that name."""
    row = conn.execute(REVOKE, (name,)).fetchone()
    if row is None:
        raise NotFound(f"No live API key is named {name}.")
    return ApiKey(*row)
