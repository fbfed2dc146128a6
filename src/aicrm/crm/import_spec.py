"""What a CSV import file may hold: the columns of a lead or contact file, how each is
checked and cast (its *kind*), what every row needs, and the parents a record names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aicrm.crm.records import Contact, Lead, Record
from aicrm.errors import InvalidInput


@dataclass(frozen=True)
class Column:
    """A column an import file may have. ``kind`` says how it is checked and cast:
    text, email, status, uuid, id, real, json, time, lead (a lead's id), client,
    user (a user's id: the owner, migration 012),
    or empty / false for a lead's conversion columns (a converted lead cannot be
    imported: conversion is done by aicrm)."""

    name: str
    kind: str


@dataclass(frozen=True)
class Parent:
    """A column naming the record's parent: ``column`` holds an id of ``table``."""

    column: str
    table: str

    @property
    def alias(self) -> str:
        return f"parent_{self.table[:-1]}"


@dataclass(frozen=True)
class Spec:
    """What a file of one kind of record may hold, and what each row needs."""

    cls: type[Record]
    columns: tuple[Column, ...]
    needs_one_of: tuple[str, ...]  # a row must have at least one of these
    needs_text: str  # how to say it
    # a row names exactly one of these parents (contacts: a lead or a client)
    parents: tuple[Parent, ...] = ()
    # a historical import (aicrm.crm.import_history): dates and conversions, history
    # written as it happened
    history: bool = False

    @property
    def table(self) -> str:
        return self.cls.TABLE

    @property
    def noun(self) -> str:
        return self.cls.TABLE[:-1]

    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def kind(self, name: str) -> str:
        return next(c.kind for c in self.columns if c.name == name)

    def check_parents(self, path: Path, found: set[str]) -> None:
        """Refuse a header that names none of the record's parents."""
        if self.parents and not {p.column for p in self.parents} & found:
            names = " nor ".join(p.column for p in self.parents)
            raise InvalidInput(
                f"The header of {path} has neither {names}: every {self.noun} belongs to one "
                f"{' or one '.join(p.table[:-1] for p in self.parents)}."
            )


LEADS = Spec(
    Lead,
    (
        Column("id", "id"),
        Column("first_name", "text"),
        Column("last_name", "text"),
        Column("email", "email"),
        Column("company_name", "text"),
        Column("source", "text"),
        Column("status", "status"),
        Column("ai_score", "real"),
        Column("ai_summary", "text"),
        Column("ai_annotations", "json"),
        Column("attributes", "json"),
        Column("converted_to_client_id", "empty"),
        Column("conversion_date", "empty"),
        Column("is_converted", "false"),
        Column("created_at", "time"),
        Column("updated_at", "time"),
        Column("owner_id", "user"),
    ),
    ("email", "first_name", "last_name", "company_name"),
    "an email, a name or a company",
)

CONTACTS = Spec(
    Contact,
    (
        Column("id", "id"),
        Column("lead_id", "lead"),
        Column("client_id", "client"),
        Column("first_name", "text"),
        Column("last_name", "text"),
        Column("email", "email"),
        Column("title", "text"),
        Column("ai_annotations", "json"),
        Column("attributes", "json"),
        Column("created_at", "time"),
        Column("updated_at", "time"),
    ),
    ("email", "first_name", "last_name"),
    "an email or a name",
    (Parent("lead_id", "leads"), Parent("client_id", "clients")),
)

# The PostgreSQL type each checked kind is cast to.
TYPES = {
    "id": "uuid",
    "lead": "uuid",
    "client": "uuid",
    "user": "uuid",
    "client_column": "uuid",
    "dated": "timestamptz",
    "dated_column": "timestamptz",
    "real": "real",
    "json": "jsonb",
    "time": "timestamptz",
    "false": "boolean",
}
