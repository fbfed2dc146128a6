"""The CRM's records as small dataclasses, and how they come out of rows.

Only the columns aicrm owns are read; columns a database added on its own are left
alone (and untouched by updates).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any, ClassVar

STATUSES = ("new", "contacted", "qualified", "unqualified", "lost", "converted")
OPEN_STATUSES = ("new", "contacted", "qualified", "unqualified", "lost")
# "Open" for bulk conversion by filter: neither converted, lost nor unqualified. The
# one place that says so (until statuses carry a category of their own).
IN_PIPELINE = ("new", "contacted", "qualified")


def jsonable(value: Any) -> Any:
    """A column's value as JSON can carry it (UUIDs and timestamps as strings)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclasses.dataclass(frozen=True)
class Record:
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    TABLE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (UUIDs and timestamps as strings)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Any:
        return cls(*row)


@dataclasses.dataclass(frozen=True)
class Lead(Record):
    TABLE: ClassVar[str] = "leads"
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "id", "first_name", "last_name", "email", "company_name", "source", "status",
        "ai_score", "ai_summary", "ai_annotations", "attributes",
        "converted_to_client_id", "conversion_date", "is_converted", "created_at", "updated_at",
        "owner_id",
    )  # fmt: skip

    id: uuid.UUID
    first_name: str | None
    last_name: str | None
    email: str | None
    company_name: str | None
    source: str | None
    status: str
    ai_score: float | None
    ai_summary: str | None
    ai_annotations: dict[str, Any]
    attributes: dict[str, Any]
    converted_to_client_id: uuid.UUID | None
    conversion_date: datetime | None
    is_converted: bool
    created_at: datetime
    updated_at: datetime
    owner_id: uuid.UUID | None = None  # the user who owns it (migration 012)

    @property
    def display_name(self) -> str:
        person = " ".join(p for p in (self.first_name, self.last_name) if p)
        return person or self.company_name or self.email or str(self.id)


@dataclasses.dataclass(frozen=True)
class Client(Record):
    TABLE: ClassVar[str] = "clients"
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "id", "name", "industry", "ai_score", "ai_summary", "ai_annotations", "attributes",
        "created_at", "updated_at", "owner_id",
    )  # fmt: skip

    id: uuid.UUID
    name: str
    industry: str | None
    ai_score: float | None
    ai_summary: str | None
    ai_annotations: dict[str, Any]
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    owner_id: uuid.UUID | None = None  # the user who owns it (migration 012)


@dataclasses.dataclass(frozen=True)
class Contact(Record):
    TABLE: ClassVar[str] = "contacts"
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "id", "lead_id", "client_id", "first_name", "last_name", "email", "title",
        "ai_annotations", "attributes", "created_at", "updated_at",
    )  # fmt: skip

    id: uuid.UUID
    lead_id: uuid.UUID | None
    client_id: uuid.UUID | None
    first_name: str | None
    last_name: str | None
    email: str | None
    title: str | None
    ai_annotations: dict[str, Any]
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
