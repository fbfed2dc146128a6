"""Request and response models: what the OpenAPI document shows, and what the API checks.

Request models refuse unknown fields and name the field of every error (422). Their
limits keep values inside what the database and its indexes accept (a long email
would not fit a btree entry, an infinite score is not a ``real``), so a bad value is
a 422 that names the field, never a 500.

Response models document the bodies; the routes build the JSON themselves (from
the library's ``to_dict()``) and return it directly, so no response is validated
twice on the hot path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from aicrm.crm.store import MAX_PAGE

# Lead statuses are data (table lead_statuses, migration 008; 'aicrm statuses list'):
# the library checks a status against it (unknown: 422). 'converted' is set only by
# converting.
OpenStatus = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="A lead status a client may set: new, contacted, qualified, unqualified, "
        "lost, or one the CRM added (aicrm statuses list); not converted.",
    ),
]
Status = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="A lead status: new, contacted, qualified, converted, unqualified, lost, "
        "or one the CRM added (aicrm statuses list).",
    ),
]

NAME = 200  # names, titles, sources, industries
EMAIL = 254  # RFC 5321's longest usable address
SUMMARY = 10_000
# The library's email rule (aicrm.crm.store.EMAIL), as a JSON Schema pattern.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"


def _text() -> Any:
    return Field(default=None, max_length=NAME)


def _email() -> Any:
    return Field(default=None, max_length=EMAIL, pattern=EMAIL_PATTERN)


def _summary() -> Any:
    return Field(default=None, max_length=SUMMARY)


def _not_null(**constraints: Any) -> Any:
    """A field of an update that may be left out, but not be null (for an object:
    send {} to clear it)."""
    return Field(default=None, **constraints)


class Model(BaseModel):
    """Base of the request bodies: unknown fields and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- leads --------------------------------------------------------------------------


class LeadCreate(Model):
    first_name: str | None = _text()
    last_name: str | None = _text()
    email: str | None = _email()
    company_name: str | None = _text()
    source: str | None = _text()
    status: OpenStatus = Field(default="new")
    ai_score: float | None = None
    ai_summary: str | None = _summary()
    ai_annotations: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    owner_id: str | None = Field(
        default=None,
        max_length=EMAIL,
        description="The owner: a user's id or email. Left out on creation: the "
        "assignment rules choose (round-robin), if any.",
    )


class LeadUpdate(Model):
    """Fields to change; a field left out is kept, ``null`` clears it (where allowed).
    ``attributes`` and ``ai_annotations`` are replaced whole."""

    first_name: str | None = _text()
    last_name: str | None = _text()
    email: str | None = _email()
    company_name: str | None = _text()
    source: str | None = _text()
    status: OpenStatus = _not_null()
    ai_score: float | None = None
    ai_summary: str | None = _summary()
    ai_annotations: dict[str, Any] = _not_null()
    attributes: dict[str, Any] = _not_null()
    owner_id: str | None = Field(
        default=None,
        max_length=EMAIL,
        description="The owner: a user's id or email (the history records the change); "
        "null: nobody.",
    )


class Lead(BaseModel):
    id: UUID
    first_name: str | None
    last_name: str | None
    email: str | None
    company_name: str | None
    source: str | None
    status: Status
    ai_score: float | None
    ai_summary: str | None
    ai_annotations: dict[str, Any]
    attributes: dict[str, Any]
    converted_to_client_id: UUID | None
    conversion_date: datetime | None
    is_converted: bool
    created_at: datetime
    updated_at: datetime
    owner_id: UUID | None = Field(default=None, description="The user who owns the lead.")


class LeadPage(BaseModel):
    items: list[Lead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class ConvertRequest(Model):
    client_id: UUID | None = Field(
        default=None, description="Convert into this existing client instead of a new one."
    )
    overwrite: bool = Field(
        default=False,
        description="With client_id: the lead's non-empty values replace the client's.",
    )
    allow_duplicate: bool = Field(
        default=False, description="Convert even if other leads or contacts have the same email."
    )


class Conversion(BaseModel):
    lead_id: UUID
    client_id: UUID
    conversion_date: datetime
    created_client: bool
    already_converted: bool = Field(
        description="True when the lead was converted before: nothing was written."
    )
    contacts_moved: int


class BulkConvertFilter(Model):
    status: OpenStatus | None = Field(
        default=None,
        description="Only this status. Without it: open leads only (new, contacted, "
        "qualified), unless `include_closed`.",
    )
    source: str | None = _text()
    attributes: dict[str, Any] = Field(default_factory=dict)
    include_closed: bool = Field(
        default=False, description="Without `status`: lost and unqualified leads too."
    )


class BulkConvertRequest(Model):
    ids: list[UUID] | None = Field(default=None, max_length=100_000)
    filter: BulkConvertFilter | None = None
    all_or_nothing: bool = Field(
        default=True, description="Refuse the whole batch on the first unknown id or duplicate."
    )
    allow_duplicates: bool = False


class BulkConversion(BaseModel):
    converted: int
    already_converted: int
    not_found: list[UUID]
    duplicates: dict[str, str]


class MergeRequest(Model):
    others: list[UUID] = Field(
        min_length=1, max_length=100, description="The leads merged into this one, then deleted."
    )


class MergeResult(BaseModel):
    kept: Lead
    merged: list[UUID]
    contacts_moved: int


# --- clients ------------------------------------------------------------------------


class ClientCreate(Model):
    name: str = Field(min_length=1, max_length=NAME, pattern=r"\S")
    industry: str | None = _text()
    ai_score: float | None = None
    ai_summary: str | None = _summary()
    ai_annotations: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    owner_id: str | None = Field(
        default=None, max_length=EMAIL, description="The owner: a user's id or email."
    )


class ClientUpdate(Model):
    name: str = _not_null(min_length=1, max_length=NAME, pattern=r"\S")
    industry: str | None = _text()
    ai_score: float | None = None
    ai_summary: str | None = _summary()
    ai_annotations: dict[str, Any] = _not_null()
    attributes: dict[str, Any] = _not_null()
    owner_id: str | None = Field(
        default=None, max_length=EMAIL, description="The owner: a user's id or email."
    )


class Client(BaseModel):
    id: UUID
    name: str
    industry: str | None
    ai_score: float | None
    ai_summary: str | None
    ai_annotations: dict[str, Any]
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    owner_id: UUID | None = Field(default=None, description="The user who owns the client.")


class ClientPage(BaseModel):
    items: list[Client]
    next_cursor: str | None


# --- contacts -----------------------------------------------------------------------


class ContactCreate(Model):
    lead_id: UUID | None = Field(default=None, description="The lead it belongs to, or:")
    client_id: UUID | None = Field(default=None, description="the client it belongs to.")
    first_name: str | None = _text()
    last_name: str | None = _text()
    email: str | None = _email()
    title: str | None = _text()
    ai_annotations: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ContactUpdate(Model):
    """Setting ``lead_id`` (or ``client_id``) moves the contact and clears the other."""

    lead_id: UUID = _not_null()
    client_id: UUID = _not_null()
    first_name: str | None = _text()
    last_name: str | None = _text()
    email: str | None = _email()
    title: str | None = _text()
    ai_annotations: dict[str, Any] = _not_null()
    attributes: dict[str, Any] = _not_null()


class Contact(BaseModel):
    id: UUID
    lead_id: UUID | None
    client_id: UUID | None
    first_name: str | None
    last_name: str | None
    email: str | None
    title: str | None
    ai_annotations: dict[str, Any]
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ContactPage(BaseModel):
    items: list[Contact]
    next_cursor: str | None


# --- history ------------------------------------------------------------------------


class HistoryEntry(BaseModel):
    id: int
    operation: Literal["insert", "update", "delete"]
    changed_at: datetime
    actor: str = Field(description="Who made the change: an API key's name, or a login.")
    changes: dict[str, Any] = Field(
        description="update: {column: [old, new]}; insert and delete: the row's values."
    )


# --- import, reports ------------------------------------------------------------------


class RowError(BaseModel):
    line: int = Field(description="The CSV record's number, the header being line 1.")
    reason: str


class ImportResult(BaseModel):
    table: Literal["leads", "contacts"]
    rows: int
    imported: int
    rejected: int
    errors: list[RowError] = Field(description="The first rejected rows (at most 100).")


class SourceConversion(BaseModel):
    source: str
    total_leads: int
    converted_leads: int
    active_leads: int
    conversion_rate: float = Field(description="From 0 to 1.")
    avg_days_to_convert: float | None


class ClientLead(BaseModel):
    client_id: UUID
    client_name: str
    lead_id: UUID
    lead_email: str | None
    lead_source: str | None
    lead_created_at: datetime
    conversion_date: datetime | None
    days_to_convert: float | None


class FunnelStage(BaseModel):
    status: Status
    reached: int
    current: int
    drop_off: float | None
    median_days: float | None


# --- AI -------------------------------------------------------------------------------


class ScoreRequest(Model):
    lead_ids: list[UUID] | None = Field(
        default=None, max_length=100_000, description="These leads (default: every open lead)."
    )
    include_converted: bool = Field(
        default=False,
        description="Also write every converted or lost lead's outcome (never a score).",
    )


class ScoreResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    model_version: str
    method: str
    scored: int
    tiers: dict[str, int]


class ScorePoint(BaseModel):
    scored_at: datetime
    score: float
    model_version: str = Field(description="The version of the model that gave the score.")


class ScoreTrend(BaseModel):
    """A lead's recorded scores, oldest first (a point per score that moved by 0.01 or more,
    or came from another model)."""

    model_config = ConfigDict(protected_namespaces=())

    lead_id: UUID
    points: list[ScorePoint]


class Factor(BaseModel):
    model_config = ConfigDict(extra="allow")

    feature: str
    label: str
    value: Any
    contribution: float


class Explanation(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    lead_id: UUID
    score: float | None = Field(description="None for a converted or lost lead: see `outcome`.")
    tier: str | None
    method: str
    model_version: str
    factors: list[Factor]


class Analysis(BaseModel):
    """The conversion-pattern analysis (:mod:`aicrm.ai.analysis`)."""

    model_config = ConfigDict(extra="allow")

    as_of: datetime
    horizon_days: int
    recent_days: int
    leads: int
    labelled: int
    overall: dict[str, Any]
    by_source: list[dict[str, Any]]
    by_industry: list[dict[str, Any]]
    by_cohort: list[dict[str, Any]]
    funnel: list[dict[str, Any]]
    drivers: dict[str, Any]
    changes: dict[str, Any]
    notes: list[str]


# --- API keys -----------------------------------------------------------------------


class ApiKeyCreate(Model):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    scope: Literal["read", "write", "admin"]


class ApiKey(BaseModel):
    id: UUID
    name: str
    scope: Literal["read", "write", "admin"]
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="Refreshed at most once a minute.")
    revoked_at: datetime | None


class ApiKeyCreated(ApiKey):
    token: str = Field(description="The key itself: shown this once, never again.")


# --- misc ---------------------------------------------------------------------------


class Ping(BaseModel):
    ok: Literal[True]


class FieldError(BaseModel):
    field: str = Field(description="The field, dotted for nested ones (attributes.x, others.0).")
    location: Literal["body", "query", "path", "header", "cookie"] = Field(alias="in")
    message: str

    model_config = ConfigDict(populate_by_name=True)


class Problem(BaseModel):
    """RFC 9457 problem details: every error response has this shape."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(
        default=None, description="422: one entry per invalid field."
    )
    conflicting: Any = Field(
        default=None, description="409 and 412: the record (or records) in the way."
    )


PAGE_LIMIT = MAX_PAGE
