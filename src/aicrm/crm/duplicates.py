"""Duplicate detection by email, case-insensitive, across leads and contacts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import DuplicateFound

# Both lookups use the lower(email) indexes of migration 002.
MATCHES = """
SELECT 'lead' AS kind, id, email, coalesce(nullif(concat_ws(' ', first_name, last_name), ''),
       company_name, email) AS name
FROM leads WHERE lower(email) = lower(%(email)s) AND id <> ALL(%(exclude)s)
UNION ALL
SELECT 'contact', id, email, coalesce(nullif(concat_ws(' ', first_name, last_name), ''), email)
FROM contacts WHERE lower(email) = lower(%(email)s) AND id <> ALL(%(exclude)s)
  AND (lead_id IS NULL OR lead_id <> ALL(%(exclude)s))
ORDER BY 1, 2
"""

# Serialises writers of the same email, so two concurrent creations cannot both
# pass the check; released at the end of the transaction.
LOCK_EMAIL = "SELECT pg_advisory_xact_lock(hashtext('aicrm:email:' || lower(%s)))"


@dataclass(frozen=True)
class Match:
    kind: str  # 'lead' or 'contact'
    id: uuid.UUID
    email: str
    name: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "id": str(self.id), "email": self.email, "name": self.name}


@translated()
def find(
    conn: Connection, email: str | None, exclude: list[uuid.UUID] | None = None
) -> list[Match]:
    """Leads and contacts whose email equals ``email`` ignoring case, but ``exclude``
    (ids of the record itself and its own contacts' lead)."""
    if not email:
        return []
    rows = conn.execute(MATCHES, {"email": email, "exclude": exclude or []}).fetchall()
    return [Match(*row) for row in rows]


@translated()
def refuse(conn: Connection, email: str | None, exclude: list[uuid.UUID] | None = None) -> None:
    """Take the email's lock, then raise :class:`DuplicateFound` naming the matches."""
    if not email:
        return
    conn.execute(LOCK_EMAIL, (email,))
    matches = find(conn, email, exclude)
    if matches:
        named = ", ".join(f"{m.kind} {m.id} ({m.name})" for m in matches[:5])
        more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
        raise DuplicateFound(
            f"The email {email} already belongs to {named}{more}. Merge them "
            "('aicrm leads merge'), or allow the duplicate explicitly.",
            details={"conflicting": [m.to_dict() for m in matches]},
        )
