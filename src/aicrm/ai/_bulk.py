"""Scoring leads in bulk with the active model, and writing the scores back.

:func:`score` reads the features of every open lead (or the given ones) with one
binary COPY received in frames by a thread while this one predicts and explains the
frames already there; :mod:`aicrm.ai._writeback` then writes every score in one
COPY and one UPDATE, all in one transaction on the caller's connection. The features
may be read on another connection (``read``: a read replica, docs/deployment.md);
the active model, the moment and the write-back stay on the caller's (the primary).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from aicrm.ai._features import Frame, scoring_frame, scoring_frames
from aicrm.ai._prediction import TIERS, attributes_seen, missing_warnings, predict
from aicrm.ai._store import load_active
from aicrm.ai._window import server_now
from aicrm.ai._writeback import (
    Staged,
    entry_head,
    make_terms,
    produced_now,
    staging_rows,
    write_back,
)
from aicrm.ai.closed import write_outcomes
from aicrm.crm import ids, session
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput, NotFound

TOP_FACTORS = 3
Progress = Callable[[str], None]


def quiet(_text: str) -> None:
    """A progress callback that shows nothing."""
    return None


@dataclass(kw_only=True)
class ScoreResult:
    version: str
    method: str
    scored: int
    closed: int
    tiers: dict[str, int]
    seconds: float
    timings: dict[str, float]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.version, "method": self.method, "scored": self.scored,
            "closed": self.closed, "tiers": self.tiers, "seconds": round(self.seconds, 3),
            "leads_per_second": round(self.scored / self.seconds) if self.seconds > 0 else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "warnings": self.warnings,
        }  # fmt: skip


STAGING = "aicrm_scoring_staging"


@translated()
def score(
    conn: Connection,
    *,
    lead_ids: Sequence[str] | None = None,
    include_converted: bool = False,
    as_of: datetime | None = None,
    top: int = TOP_FACTORS,
    actor: str | None = None,
    progress: Progress = quiet,
    read: Connection | None = None,
) -> ScoreResult:
    """Score open leads (or the given ones) with the active model and write ``ai_score``
    and the ``lead_scoring`` annotation back, set-based.

    A converted or lost lead gets no score: among the given ones, with
    ``include_converted`` all of them, and otherwise those still carrying a score from
    when they were open, get ``ai_score`` cleared and their outcome written instead
    (:mod:`aicrm.ai.closed`); :attr:`ScoreResult.closed` counts them.

    ``read``: where the leads' features are read (e.g. :func:`aicrm.db.connect_read`'s
    replica); default ``conn``. The model, the moment and the write-back always use
    ``conn``, so the active model is the one just activated, and a lead the replica
    does not have yet is simply not scored this time."""
    if not 1 <= top <= 10:
        raise InvalidInput("The number of factors to keep must be between 1 and 10.")
    keys = [str(ids.parse(i, "lead id")) for i in lead_ids] if lead_ids is not None else None
    with session.transaction(conn, actor):
        return _score(conn, read or conn, keys, include_converted, as_of, top, actor, progress)


CHUNK = 65_536  # leads per frame: predicted while PostgreSQL computes the next ones


def _score(
    conn: Connection,
    read: Connection,
    keys: list[str] | None,
    include_converted: bool,
    as_of: datetime | None,
    top: int,
    actor: str | None,
    progress: Progress,
) -> ScoreResult:
    started = time.perf_counter()
    stored = load_active(conn)
    moment = as_of or server_now(conn)
    terms = make_terms(stored)
    head = entry_head(stored, as_of)
    # Closed leads first, on the primary: their outcome, not a chance to convert.
    # With as_of, which leads were closed is read from the history as of then: a lead
    # converted or lost later was open then (and one created later is not scored).
    closed = write_outcomes(
        conn, stored, lead_ids=keys, every=include_converted, produced=produced_now(),
        as_of=as_of,
    )  # fmt: skip
    outcomes = time.perf_counter() - started
    progress("reading the leads' features and scoring them")
    frames: Iterator[Frame]
    open_at = as_of is not None
    if keys is None:
        frames = scoring_frames(read, stored.features, as_of=moment, open_at=open_at, rows=CHUNK)
    else:
        keys = [k for k in keys if k not in closed]
        frames = iter(
            [scoring_frame(read, stored.features, as_of=moment, lead_ids=keys, open_at=open_at)]
            if keys
            else []
        )
    rows: list[Staged] = []
    tiers = np.zeros(len(TIERS), dtype=np.int64)
    seen: set[str] = set()
    found: list[str] = []
    n = 0
    predicting = 0.0
    for frame in frames:  # PostgreSQL computes the next frame meanwhile
        mark = time.perf_counter()
        pred = predict(stored, frame, check=False)
        seen |= attributes_seen(stored, frame.values)
        rows.append(staging_rows(stored, frame, pred, top, terms, head))
        tiers += np.bincount(pred.tiers - 1, minlength=len(TIERS))
        if keys is not None:
            found += frame.lead_ids
        n += len(frame)
        predicting += time.perf_counter() - mark
    if keys is not None and n < len(set(keys)):  # the open ones asked for
        missing = sorted(set(keys) - set(found))
        raise NotFound(
            f"No lead has id {missing[0]}."
            if len(missing) == 1
            else f"{len(missing)} of the leads do not exist (e.g. {missing[0]})."
        )
    timings = {
        "outcomes": outcomes,
        "read": time.perf_counter() - started - outcomes,
        "predict": predicting,
    }
    mark = time.perf_counter()
    progress(f"writing {n} scores")
    write_back(conn, rows, actor, stored.version)
    timings["write"] = time.perf_counter() - mark
    counts = {t: int(tiers[i]) for i, t in enumerate(TIERS)}
    return ScoreResult(
        version=stored.version,
        method=stored.method,
        scored=n,
        closed=len(closed),
        tiers=counts,
        seconds=time.perf_counter() - started,
        timings=timings,
        warnings=missing_warnings(stored, seen, n),
    )
