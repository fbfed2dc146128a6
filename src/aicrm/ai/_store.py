"""Stored lead-scoring models: the ``ai_models`` rows, read into named records.

:func:`load_active` reads the active model and checks it against today's schema (the
feature set this aicrm computes, the ``leads`` columns it reads, the checksum of its
parameters); :func:`save` stores a trained model, active or not; :func:`list_models`
lists them. The parameters are an ``.npz`` of plain arrays, loaded without pickle.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from aicrm.ai._features import BUILTIN, FEATURE_SET, Encoding, Feature, lead_columns_used
from aicrm.ai._model import Scorer
from aicrm.ai._prior import Prior
from aicrm.ai.annotations import require_schema
from aicrm.crm import session
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import NotFound, UsageError

KIND = "lead_scoring"


@dataclass
class ModelRow:
    """One row of ``ai_models``, as stored."""

    id: int
    version: str
    method: str
    algorithm: str
    active: bool
    horizon_days: int
    created_at: datetime
    as_of: datetime
    trained_from: datetime | None
    trained_to: datetime | None
    n_leads: int
    n_positive: int
    n_negative: int
    metrics: dict[str, Any]
    features: list[dict[str, Any]]
    params: dict[str, Any]
    artifact: bytes | None
    artifact_sha256: str | None


MODEL_COLUMNS = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(ModelRow))
ACTIVE_MODEL = sql.SQL("SELECT {columns} FROM ai_models WHERE kind = %s AND active").format(
    columns=MODEL_COLUMNS
)
ALL_MODELS = sql.SQL(
    "SELECT {columns} FROM ai_models WHERE kind = %s ORDER BY created_at DESC, id DESC"
).format(columns=MODEL_COLUMNS)
LEAD_COLUMNS = (
    "SELECT attname FROM pg_attribute WHERE attrelid = 'leads'::regclass "
    "AND attnum > 0 AND NOT attisdropped"
)
YOUNGER_THAN = "SELECT %s > now() - %s * interval '1 day'"
DEACTIVATE = "UPDATE ai_models SET active = false WHERE kind = %(kind)s AND active"
INSERT_MODEL = """
INSERT INTO ai_models (kind, version, method, algorithm, active, horizon_days, trained_from,
                       trained_to, as_of, n_leads, n_positive, n_negative, metrics, features,
                       params, artifact, artifact_format, artifact_sha256)
VALUES (%(kind)s, %(version)s, %(method)s, %(algorithm)s, %(active)s, %(horizon)s,
        %(trained_from)s, %(trained_to)s, %(as_of)s, %(n_leads)s, %(n_positive)s,
        %(n_negative)s, %(metrics)s, %(features)s, %(params)s, %(artifact)s,
        %(artifact_format)s, %(artifact_sha256)s)
RETURNING id, created_at
"""


@dataclass(kw_only=True)
class StoredModel:
    """A lead-scoring model with what is needed to score: its scorer (a trained
    model) or its prior (the fallback)."""

    id: int = 0
    version: str = ""
    method: str  # "model" or "prior"
    algorithm: str
    active: bool = False
    horizon: int
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    as_of: datetime = field(default_factory=lambda: datetime.now(UTC))
    trained_from: datetime | None = None
    trained_to: datetime | None = None
    n_leads: int = 0
    n_positive: int = 0
    n_negative: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    features: list[Feature]
    params: dict[str, Any]
    scorer: Scorer | None = None
    prior: Prior | None = None

    @property
    def encoding(self) -> Encoding:
        return Encoding.from_dict(self.params["encoding"])

    @property
    def cutoffs(self) -> list[float]:
        return [float(c) for c in self.params["tier_cutoffs"]]

    @property
    def confidence(self) -> float:
        """The model's Gini (2·AUC − 1) on its reported evaluation, in [0, 1]."""
        auc = self.metrics.get("auc")
        if not isinstance(auc, int | float) or math.isnan(auc):
            return 0.0
        return round(max(0.0, min(1.0, 2 * float(auc) - 1)), 4)

    def summary(self) -> dict[str, Any]:
        """What ``aicrm ai train`` and the API report about the model."""
        return {
            "version": self.version,
            "method": self.method,
            "algorithm": self.algorithm,
            "active": self.active,
            "horizon_days": self.horizon,
            "created_at": self.created_at.isoformat(),
            "as_of": self.as_of.isoformat(),
            "trained_from": self.trained_from.isoformat() if self.trained_from else None,
            "trained_to": self.trained_to.isoformat() if self.trained_to else None,
            "leads": self.n_leads,
            "conversions": self.n_positive,
            "non_conversions": self.n_negative,
            "metrics": self.metrics,
            "features": [f.name for f in self.features],
        }


@translated()
def load_active(conn: Connection) -> StoredModel:
    """The active lead-scoring model, checked against today's schema.

    Refuses (:class:`UsageError`) a model whose feature set this aicrm no longer
    computes, one that reads a ``leads`` column that no longer exists, or one whose
    parameters do not match their checksum; :class:`NotFound` when there is none."""
    with session.transaction(conn):
        require_schema(conn)
        with conn.cursor(row_factory=class_row(ModelRow)) as cur:
            row = cur.execute(ACTIVE_MODEL, (KIND,)).fetchone()
        if row is None:
            raise NotFound("No lead-scoring model yet: run 'aicrm ai train' first.")
        return _checked(conn, row)


@translated()
def active_or_none(conn: Connection) -> StoredModel | None:
    """The active model, or None when there is none or it can no longer score."""
    try:
        return load_active(conn)
    except (NotFound, UsageError):
        return None


@translated()
def fresh_model(conn: Connection, days: int) -> StoredModel | None:
    """The active model when it was trained less than ``days`` days ago (by the
    server's clock) and can still score; None when it is older, missing or unusable."""
    found = active_or_none(conn)
    if found is None:
        return None
    row = conn.execute(YOUNGER_THAN, (found.created_at, days)).fetchone()
    return found if row is not None and row[0] else None


def _retrain(version: str, why: str) -> UsageError:
    return UsageError(f"Model {version} {why}; retrain it with 'aicrm ai train'.")


def _checked(conn: Connection, row: ModelRow) -> StoredModel:
    params = dict(row.params)
    if int(params.get("feature_set", -1)) != FEATURE_SET:
        raise _retrain(
            row.version,
            f"was trained with feature set {params.get('feature_set')}, and this aicrm "
            f"computes feature set {FEATURE_SET}",
        )
    try:
        features = [Feature.from_dict(f) for f in row.features]
    except (KeyError, TypeError, ValueError) as exc:
        raise _retrain(row.version, f"has an unreadable feature list ({exc})") from None
    unknown = [f.name for f in features if f.key is None and f.name not in BUILTIN]
    if unknown:
        raise _retrain(
            row.version, f"uses features this aicrm does not know ({', '.join(unknown)})"
        )
    have = {str(r[0]) for r in conn.execute(LEAD_COLUMNS).fetchall()}
    missing = [str(c) for c in params.get("lead_columns", []) if str(c) not in have]
    if missing:
        raise UsageError(
            f"Model {row.version} was trained on lead columns that no longer exist "
            f"({', '.join(missing)}); retrain it with 'aicrm ai train' on today's columns."
        )
    stored = StoredModel(
        id=row.id,
        version=row.version,
        method=row.method,
        algorithm=row.algorithm,
        active=row.active,
        horizon=row.horizon_days,
        created_at=row.created_at,
        as_of=row.as_of,
        trained_from=row.trained_from,
        trained_to=row.trained_to,
        n_leads=row.n_leads,
        n_positive=row.n_positive,
        n_negative=row.n_negative,
        metrics=dict(row.metrics),
        features=features,
        params=params,
    )
    if row.method == "prior":
        stored.prior = Prior.from_dict(params["prior"])
        return stored
    blob = bytes(row.artifact or b"")
    if not blob or hashlib.sha256(blob).hexdigest() != row.artifact_sha256:
        raise _retrain(row.version, "has parameters that do not match their checksum")
    try:
        stored.scorer = Scorer.from_npz(row.algorithm, blob)
    except (ValueError, KeyError, OSError) as exc:
        raise _retrain(row.version, f"has parameters that cannot be read ({exc})") from None
    return stored


@translated()
def list_models(conn: Connection) -> list[dict[str, Any]]:
    """Every stored lead-scoring model, newest first, with its headline figures and,
    for one stored inactive by the publish gate, the reason."""
    with session.transaction(conn):
        require_schema(conn)
        with conn.cursor(row_factory=class_row(ModelRow)) as cur:
            rows = cur.execute(ALL_MODELS, (KIND,)).fetchall()
    return [
        {
            "version": row.version,
            "method": row.method,
            "algorithm": row.algorithm,
            "horizon_days": row.horizon_days,
            "created_at": row.created_at.isoformat(),
            "leads": row.n_leads,
            "conversions": row.n_positive,
            "auc": row.metrics.get("auc"),
            "active": row.active,
            "gate": row.params.get("gate"),
        }
        for row in rows
    ]


@translated()
def save(conn: Connection, model: StoredModel, *, activate: bool, actor: str | None) -> None:
    """Store ``model`` (its version made here), active when ``activate``: the model
    active before is then deactivated in the same transaction."""
    blob = model.scorer.to_npz() if model.scorer is not None else None
    model.version = f"ls-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    model.params["feature_set"] = FEATURE_SET
    model.params["lead_columns"] = lead_columns_used(model.features)
    model.active = activate
    with session.transaction(conn, actor):
        if activate:
            conn.execute(DEACTIVATE, {"kind": KIND})
        row = conn.execute(
            INSERT_MODEL,
            {
                "kind": KIND,
                "version": model.version,
                "method": model.method,
                "algorithm": model.algorithm,
                "active": activate,
                "horizon": model.horizon,
                "trained_from": model.trained_from,
                "trained_to": model.trained_to,
                "as_of": model.as_of,
                "n_leads": model.n_leads,
                "n_positive": model.n_positive,
                "n_negative": model.n_negative,
                "metrics": Jsonb(json_safe(model.metrics)),
                "features": Jsonb([f.to_dict() | {"label": f.label} for f in model.features]),
                "params": Jsonb(json_safe(model.params)),
                "artifact": blob,
                "artifact_format": "npz" if blob is not None else None,
                "artifact_sha256": hashlib.sha256(blob).hexdigest() if blob is not None else None,
            },
        ).fetchone()
    assert row is not None
    model.id, model.created_at = int(row[0]), row[1]


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None and numpy scalars as Python ones."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.floating | np.integer):
        return json_safe(value.item())
    return value
