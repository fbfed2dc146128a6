"""Request and response models of activities, users, tasks and timelines (issue #17;
the rest are in :mod:`aicrm.api._schemas`, whose conventions these follow)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from aicrm.api._schemas import EMAIL, EMAIL_PATTERN, NAME, SUMMARY, Model
from aicrm.crm.activities import MAX_SUBJECT

Kind = Literal["note", "call", "email", "meeting", "task"]


class ActivityCreate(Model):
    """An activity on exactly one of a lead, a client or a contact."""

    kind: Kind
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT, pattern=r"\S")
    body: str | None = Field(default=None, max_length=SUMMARY * 10)
    lead_id: UUID | None = None
    client_id: UUID | None = None
    contact_id: UUID | None = None
    due_at: datetime | None = Field(default=None, description="A task's due date.")
    assignee: str | None = Field(
        default=None, max_length=EMAIL, description="A task's assignee: a user's id or email."
    )
    attributes: dict[str, Any] = Field(default_factory=dict)


class Activity(BaseModel):
    id: UUID
    kind: Kind
    subject: str
    body: str | None
    due_at: datetime | None
    done_at: datetime | None = Field(description="When a task was done; null while open.")
    assignee_id: UUID | None
    author: str = Field(description="Who logged it: the API key's name, or a login.")
    lead_id: UUID | None
    client_id: UUID | None
    contact_id: UUID | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ActivityPage(BaseModel):
    items: list[Activity]
    next_cursor: str | None


class TimelineEntry(BaseModel):
    kind: Literal["activity", "history"]
    id: UUID | int = Field(description="The activity's id, or the history entry's.")
    at: datetime
    actor: str
    activity: Activity | None = Field(default=None, description="kind activity: the activity.")
    operation: Literal["insert", "update", "delete"] | None = Field(
        default=None, description="kind history: what was done."
    )
    changes: dict[str, Any] | None = Field(
        default=None,
        description="kind history: {column: [old, new]} for an update; the row's values "
        "for an insert or delete.",
    )


class TimelinePage(BaseModel):
    items: list[TimelineEntry] = Field(description="Newest first.")
    next_cursor: str | None


class UserCreate(Model):
    name: str = Field(min_length=1, max_length=NAME, pattern=r"\S")
    email: str = Field(max_length=EMAIL, pattern=EMAIL_PATTERN)


class User(BaseModel):
    id: UUID
    name: str
    email: str
    active: bool
    created_at: datetime


class AssignmentRuleCreate(Model):
    """The rule for one source (or, with ``source`` null, for any source without a rule
    of its own): new leads without an owner go in turn to ``users``."""

    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=NAME,
        pattern=r"\S",
        description="The leads' source; null: any source without a rule of its own.",
    )
    users: list[Annotated[str, Field(min_length=1, max_length=EMAIL)]] = Field(
        default_factory=list,
        max_length=1000,
        description="The users taking turns (ids or emails); empty: every active user.",
    )


class AssignmentRule(BaseModel):
    id: int
    source: str | None
    user_ids: list[UUID] = Field(description="Empty: every active user.")
    last_user_id: UUID | None = Field(description="The user given the last lead.")
    created_at: datetime
