"""The kinds of column an import file may have, each with its behaviour: the PostgreSQL
type its values are cast to, the check of a staged value, and the value inserted.

A :class:`~aicrm.crm._import_spec.Column` names its kind (one of the objects below);
:class:`aicrm.crm._import_checks.Checks` asks the kind of each column of the file for
its check and its inserted value, instead of testing kind names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from psycopg import sql

from aicrm.crm.store import EMAIL

# The email pattern of aicrm.crm.store, in PostgreSQL's regex dialect (the same
# text: [^@\s] means the same in both).
EMAIL_PATTERN = EMAIL.pattern

# The PostgreSQL types values are cast to, as SQL.
CASTS = {
    "uuid": sql.SQL("uuid"),
    "timestamptz": sql.SQL("timestamptz"),
    "real": sql.SQL("real"),
    "jsonb": sql.SQL("jsonb"),
    "boolean": sql.SQL("boolean"),
}
CONVERTED = (
    "status 'converted' is set only by converting a lead ('aicrm leads convert'), not by an import"
)


class Row(Protocol):
    """What a kind needs of the import's SQL: expressions over the staging row ``s``
    (:class:`aicrm.crm._import_checks.Checks` is one)."""

    settable: tuple[str, ...]
    attributes: tuple[tuple[str, str], ...]

    def raw(self, name: str) -> sql.Composable: ...
    def value(self, name: str) -> sql.Composable: ...
    def valid(self, expr: sql.Composable, type_name: str) -> sql.Composable: ...
    def shown(self, name: str) -> sql.Composable: ...
    def history_values(self) -> dict[str, sql.Composable]: ...
    def mapped_attributes(self) -> sql.Composable: ...


@dataclass(frozen=True)
class Kind:
    """A kind of column. ``type``: the PostgreSQL type its values are cast to (None: they
    stay text); ``what``: what a value that does not cast is (the message of the cast
    check; None: no cast check); ``inserted``: whether it is a column of the table (the
    others are checked, or read by a historical import, and not inserted)."""

    name: str
    type: str | None = None
    what: str | None = None
    inserted: bool = True

    def check(self, row: Row, name: str) -> sql.Composable | None:
        """A reason (text) when the staged field ``name`` is invalid, else NULL; None
        when this kind has nothing to check."""
        if self.type is None or self.what is None:
            return None
        return sql.SQL("CASE WHEN NOT {valid} THEN format({template}, {shown}) END").format(
            valid=row.valid(row.value(name), self.type),
            template=sql.Literal(f"{name} %s {self.what}"),
            shown=row.shown(name),
        )

    def insert(self, row: Row, name: str) -> sql.Composable:
        """The value the INSERT takes from the staged field ``name``."""
        assert self.type is not None, self.name
        return sql.SQL("{}::{}").format(row.value(name), CASTS[self.type])


class Text(Kind):
    def insert(self, row: Row, name: str) -> sql.Composable:
        return row.raw(name)


class Email(Kind):
    def check(self, row: Row, name: str) -> sql.Composable:
        return sql.SQL(
            "CASE WHEN {v} !~ {pattern} THEN format('%s %s is not a valid email "
            "address (expected name@domain.tld)', {col}, {shown}) END"
        ).format(
            v=row.value(name),
            pattern=sql.Literal(EMAIL_PATTERN),
            col=sql.Literal(name),
            shown=row.shown(name),
        )

    def insert(self, row: Row, name: str) -> sql.Composable:
        return row.value(name)


class Status(Kind):
    """An open lead's status: one the lead may be set to, never 'converted'."""

    def check(self, row: Row, name: str) -> sql.Composable:
        return sql.SQL(
            "CASE WHEN {v} = 'converted' THEN {converted} "
            "WHEN {v} <> ALL({known}) THEN format('status %s is not a lead status "
            "(use one of %s)', {shown}, {listed}) END"
        ).format(
            v=row.value(name),
            converted=sql.Literal(CONVERTED),
            known=sql.Literal(list(row.settable)),
            listed=sql.Literal(", ".join(row.settable)),
            shown=row.shown(name),
        )

    def insert(self, row: Row, name: str) -> sql.Composable:
        return sql.SQL("coalesce({}, 'new')").format(row.value(name))


class AnyStatus(Kind):
    """A historical import's status: 'converted' too; blank: from the conversion."""

    def check(self, row: Row, name: str) -> sql.Composable:
        known = [*row.settable, "converted"]
        return sql.SQL(
            "CASE WHEN {v} <> ALL({known}) THEN format('status %s is not a lead "
            "status (use one of %s)', {shown}, {listed}) END"
        ).format(
            v=row.value(name),
            known=sql.Literal(known),
            listed=sql.Literal(", ".join(known)),
            shown=row.shown(name),
        )

    def insert(self, row: Row, name: str) -> sql.Composable:
        return sql.SQL(
            "coalesce({}, CASE WHEN {} IS NOT NULL THEN 'converted' ELSE 'new' END)"
        ).format(row.value(name), row.history_values()["conv"])


class Empty(Kind):
    """A lead's conversion column in a plain import: must be blank."""

    def check(self, row: Row, name: str) -> sql.Composable:
        return sql.SQL("CASE WHEN {v} IS NOT NULL THEN {reason} END").format(
            v=row.value(name),
            reason=sql.Literal(
                f"{name} is set: a converted lead cannot be imported (convert it after the import)"
            ),
        )


class NotTrue(Kind):
    """``is_converted`` in a plain import: blank or false."""

    def check(self, row: Row, name: str) -> sql.Composable:
        v = row.value(name)
        return sql.SQL(
            "CASE WHEN {v} IS NULL THEN NULL WHEN NOT {valid} THEN format("
            "{template}, {shown}) WHEN {v}::boolean THEN "
            "'is_converted is true: a converted lead cannot be imported (convert "
            "it after the import)' END"
        ).format(
            v=v,
            valid=row.valid(v, "boolean"),
            template=sql.Literal(f"{name} %s is not true or false"),
            shown=row.shown(name),
        )


class Json(Kind):
    """A JSON object; ``attributes`` also takes what a mapping sends to attributes."""

    def check(self, row: Row, name: str) -> sql.Composable:
        v = row.value(name)
        return sql.SQL(
            "CASE WHEN NOT {valid} THEN {invalid} "
            "WHEN jsonb_typeof({v}::jsonb) <> 'object' THEN {not_object} END"
        ).format(
            valid=row.valid(v, "jsonb"),
            v=v,
            invalid=sql.Literal(f"{name} is not valid JSON"),
            not_object=sql.Literal(f'{name} must be a JSON object, like {{"key": "value"}}'),
        )

    def insert(self, row: Row, name: str) -> sql.Composable:
        if name == "attributes" and row.attributes:
            return sql.SQL("coalesce({}::jsonb, '{{}}') || {}").format(
                row.value(name), row.mapped_attributes()
            )
        return sql.SQL("coalesce({}::jsonb, '{{}}')").format(row.value(name))


class Time(Kind):
    def insert(self, row: Row, name: str) -> sql.Composable:
        return sql.SQL("coalesce({}::timestamptz, now())").format(row.value(name))


class ConversionDate(Kind):
    """A historical import's ``conversion_date``: inserted as the conversion's moment."""

    def insert(self, row: Row, name: str) -> sql.Composable:
        return row.history_values()["conv"]


NOT_A_UUID = "is not a UUID"
NOT_A_TIME = "is not a date and time (ISO 8601)"

ID = Kind("id", "uuid", NOT_A_UUID, inserted=False)  # the INSERT takes it on its own
TEXT = Text("text")
EMAIL_ADDRESS = Email("email")
STATUS = Status("status")
ANY_STATUS = AnyStatus("any_status")
LEAD = Kind("lead", "uuid", NOT_A_UUID)  # a lead's id
CLIENT = Kind("client", "uuid", NOT_A_UUID)  # a client's id
USER = Kind("user", "uuid", NOT_A_UUID)  # a user's id: the owner (migration 012)
CLIENT_COLUMN = Kind("client_column", "uuid", NOT_A_UUID, inserted=False)  # history's
REAL = Kind("real", "real", "is not a number")
JSON = Json("json", "jsonb")
TIME = Time("time", "timestamptz", NOT_A_TIME)
DATED = Kind("dated", "timestamptz", NOT_A_TIME, inserted=False)  # a status change's date
DATED_COLUMN = ConversionDate("dated_column", "timestamptz", NOT_A_TIME)
EMPTY = Empty("empty", inserted=False)
FALSE = NotTrue("false", "boolean", inserted=False)
NOTE = Kind("note", inserted=False)  # read by a historical import only
DERIVED = Kind("derived", inserted=False)  # recomputed from other columns
