"""What a CSV import file may hold: the columns of a lead or contact file, how each is
checked and cast (its *kind*, :mod:`aicrm.crm._import_kinds`), what every row needs, and
the parents a record names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from aicrm.crm import _import_kinds as kinds
from aicrm.crm._import_kinds import Kind, Row
from aicrm.crm.records import Contact, Lead, Record
from aicrm.errors import InvalidInput


@dataclass(frozen=True)
class Column:
    """A column an import file may have. ``kind`` says how it is checked, cast and
    inserted (:mod:`aicrm.crm._import_kinds`); a lead's conversion columns are of the
    kinds EMPTY / FALSE in a plain import (a converted lead cannot be imported:
    conversion is done by aicrm)."""

    name: str
    kind: Kind


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
    # a historical import (aicrm.crm._import_history): dates and conversions, history
    # written as it happened
    history: bool = False
    # rows without an owner get one from the assignment rules (aicrm.crm._import_owners)
    assigned: bool = False

    @property
    def table(self) -> str:
        return self.cls.TABLE

    @property
    def noun(self) -> str:
        return self.cls.TABLE[:-1]

    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def kind(self, name: str) -> Kind:
        """The kind of the column ``name``."""
        return next(c.kind for c in self.columns if c.name == name)

    def type_of(self, name: str) -> str:
        """The PostgreSQL type the column ``name`` is cast to."""
        type_name = self.kind(name).type
        assert type_name is not None, name
        return type_name

    def check(self, row: Row, name: str) -> sql.Composable | None:
        """The check of the staged field ``name``: a reason or NULL (None: no check)."""
        return self.kind(name).check(row, name)

    def inserted(self, row: Row, name: str) -> sql.Composable | None:
        """The value the INSERT takes for the column ``name``; None when it is not a
        column of the table."""
        kind = self.kind(name)
        return kind.insert(row, name) if kind.inserted else None

    def is_historical_form_of(self, other: Spec) -> bool:
        """Whether this is the historical import's form of ``other``'s records."""
        return self.history and not other.history and self.cls is other.cls

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
        Column("id", kinds.ID),
        Column("first_name", kinds.TEXT),
        Column("last_name", kinds.TEXT),
        Column("email", kinds.EMAIL_ADDRESS),
        Column("company_name", kinds.TEXT),
        Column("source", kinds.TEXT),
        Column("status", kinds.STATUS),
        Column("ai_score", kinds.REAL),
        Column("ai_summary", kinds.TEXT),
        Column("ai_annotations", kinds.JSON),
        Column("attributes", kinds.JSON),
        Column("converted_to_client_id", kinds.EMPTY),
        Column("conversion_date", kinds.EMPTY),
        Column("is_converted", kinds.FALSE),
        Column("created_at", kinds.TIME),
        Column("updated_at", kinds.TIME),
        Column("owner_id", kinds.USER),
    ),
    ("email", "first_name", "last_name", "company_name"),
    "an email, a name or a company",
    assigned=True,
)

CONTACTS = Spec(
    Contact,
    (
        Column("id", kinds.ID),
        Column("lead_id", kinds.LEAD),
        Column("client_id", kinds.CLIENT),
        Column("first_name", kinds.TEXT),
        Column("last_name", kinds.TEXT),
        Column("email", kinds.EMAIL_ADDRESS),
        Column("title", kinds.TEXT),
        Column("ai_annotations", kinds.JSON),
        Column("attributes", kinds.JSON),
        Column("created_at", kinds.TIME),
        Column("updated_at", kinds.TIME),
    ),
    ("email", "first_name", "last_name"),
    "an email or a name",
    (Parent("lead_id", "leads"), Parent("client_id", "clients")),
)
