"""Lead scoring measured: quality against the oracle, and speed.

    python bench/bench_ai.py                       # the curve 200 … 100k, and 1M scoring
    python bench/bench_ai.py --sizes 200,1000 --score-leads 0   # a quick look

Quality: for each size N, a CRM of N leads is generated with seed 1
(``aicrm.sample.crm``, history ending at the generator's ``now``) and a model is
trained on it; a second CRM of ``--test-leads`` leads (seed 2) is scored, each
lead as of its creation, and the AUC and Brier score of the model's probabilities
against the leads' real outcomes (converted within 90 days) are reported next to
the oracle's: the true probabilities in ``sample_truth``, which no model can beat
on average. The ratio model AUC / oracle AUC is the curve; the target is ≥ 0.97
at 50k leads, and never below a plain one-hot logistic regression fit on the same
rows (measured in the same run).

Speed: training time is measured on the largest size; scoring on a CRM of
``--score-leads`` leads (seed 3), every lead, converted ones included, with the
model trained on the largest size copied in: features read, predicted, and
written back (COPY into a staging table, then one UPDATE), in leads/s.

The results replace the sections "Lead scoring: quality against the oracle" and
"Lead scoring: speed" of bench/RESULTS.md, leaving the other sections alone.

The server is the one aicrm would use: DATABASE_URL (or DB_*, PG*), else the
embedded PostgreSQL under AICRM_HOME (bench/out/home when unset). Migrations come
from AICRM_WIP_MIGRATIONS when set (else the packaged ones). Databases are named
``benchai_*`` and dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from aicrm import config
from aicrm.db import embedded, target

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"
QUALITY = "Lead scoring: quality against the oracle"
SPEED = "Lead scoring: speed"


def admin() -> tuple[str, str]:
    if not os.environ.get("AICRM_HOME"):
        os.environ["AICRM_HOME"] = str(BENCH / "out" / "home")
    settings = config.resolve()
    if settings.embedded:
        return embedded.conninfo(settings.home, "postgres"), "embedded"
    return target(settings).conninfo, settings.source


def fresh(server: str, name: str) -> str:
    """A new database at the newest schema; its conninfo."""
    from aicrm.migrate import Options, migrate

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server, dbname=name)
    wip = os.environ.get("AICRM_WIP_MIGRATIONS")
    where = target(config.resolve({"DATABASE_URL": url, "AICRM_HOME": os.environ["AICRM_HOME"]}))
    migrate(
        Options(backup_dir=BENCH / "out" / "backups", migrations_dir=Path(wip) if wip else None),
        where,
    )
    return url


def drop(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def generate(url: str, leads: int, seed: int) -> float:
    from aicrm.sample.crm import generate as make

    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        make(conn, leads=leads, seed=seed)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE leads")
    return time.perf_counter() - started


LATER = 30  # days after creation: the second moment each test lead is judged at
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Point:
    leads: int
    conversions: int
    method: str
    algorithm: str
    train_seconds: float
    auc: float
    brier: float
    oracle_auc: float
    oracle_brier: float
    cv_auc: float
    baseline_auc: float  # a plain one-hot logistic regression on the same rows
    # the test CRM's leads still open LATER days after creation, as of then: where
    # engagement (activities logged by then) can tell; no oracle exists for it
    later_auc: float = float("nan")
    # the ceiling: the truth without the hidden intent (p_columns_90d), the best any model
    # of the columns can rank; and the model's Brier before the replay scaling (which is
    # fit for open leads of every age, not for leads at creation)
    ceiling_auc: float = float("nan")
    brier_unreplayed: float = float("nan")

    @property
    def ratio(self) -> float:
        return self.auc / self.oracle_auc


def evaluate(train_url: str, test_url: str, test_cache: dict[str, Any]) -> Point:
    from aicrm.ai import _features as F, _model as M, scoring

    with psycopg.connect(train_url) as conn:
        now = conn.execute("SELECT max(created_at) FROM leads").fetchone()[0]  # type: ignore[index]
        started = time.perf_counter()
        result = scoring.train(conn, as_of=now)
        seconds = time.perf_counter() - started
        stored = scoring.load_active(conn)
    with psycopg.connect(test_url) as conn:
        test_now = conn.execute("SELECT max(created_at) FROM leads").fetchone()[0]  # type: ignore[index]
        frame = F.creation_frame(conn, stored.features, horizon=90)
        if "truth" not in test_cache:
            test_cache["truth"] = dict(
                conn.execute("SELECT lead_id::text, p_convert_90d FROM sample_truth").fetchall()
            )
            test_cache["columns"] = dict(
                conn.execute("SELECT lead_id::text, p_columns_90d FROM sample_truth").fetchall()
            )
        later = F.training_frame(
            conn, stored.features, horizon=90, as_of=test_now, since=EPOCH, landmarks=[0, LATER]
        )
    at_later = later.landmarks == LATER
    later_auc = M.auc(
        later.labels[at_later],  # type: ignore[index]
        scoring.predict(stored, later).scores[at_later],
    )
    predicted = scoring.predict(stored, frame).scores
    unreplayed = scoring.predict(stored, frame, replayed=False).scores
    ids = frame.lead_ids
    created_ok = _judged(test_url, ids)
    with psycopg.connect(train_url) as conn:
        train = F.creation_frame(conn, stored.features, horizon=90)
    train_ok = _judged(train_url, train.lead_ids)
    plain = one_hot_logistic(
        [f.kind for f in stored.features],
        train.values[train_ok],
        train.labels[train_ok],  # type: ignore[index]
        frame.values,
    )
    y = frame.labels[created_ok]  # type: ignore[index]
    p = predicted[created_ok]
    oracle = np.array([test_cache["truth"][i] for i in ids])[created_ok]
    ceiling = np.array([test_cache["columns"][i] for i in ids])[created_ok]
    return Point(
        result.model.n_leads, result.model.n_positive, result.model.method,
        result.model.algorithm, seconds, M.auc(y, p), M.brier(y, p), M.auc(y, oracle),
        M.brier(y, oracle), float(result.model.metrics.get("auc") or float("nan")),
        M.auc(y, plain[created_ok]), later_auc, M.auc(y, ceiling),
        M.brier(y, unreplayed[created_ok]),
    )  # fmt: skip


def one_hot_logistic(
    kinds: list[str], x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray
) -> np.ndarray:
    """The baseline: scikit-learn's LogisticRegression (defaults) on the same raw features,
    categories one-hot (every level seen in training), numbers as they are with missing
    values set to the training median, all standardised. Its probabilities on x_test."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    def design(x: np.ndarray, levels: list[np.ndarray | None], medians: list[float]) -> np.ndarray:
        cols: list[np.ndarray] = []
        for j, kind in enumerate(kinds):
            lv = levels[j]
            if kind == "category" and lv is not None:
                cols.extend((x[:, j] == v).astype(float) for v in lv)
            else:
                cols.append(np.where(np.isnan(x[:, j]), medians[j], x[:, j]))
        return np.column_stack(cols)

    levels = [np.unique(x_train[:, j]) if k == "category" else None for j, k in enumerate(kinds)]
    medians = [
        float(np.nanmedian(x_train[:, j])) if np.isfinite(x_train[:, j]).any() else 0.0
        for j in range(len(kinds))
    ]
    a = design(x_train, levels, medians)
    b = design(x_test, levels, medians)
    mean, std = a.mean(axis=0), a.std(axis=0)
    std[std == 0] = 1.0
    fit = LogisticRegression(max_iter=2000).fit((a - mean) / std, y_train)
    out: np.ndarray = fit.predict_proba((b - mean) / std)[:, 1]
    return out


def _judged(url: str, ids: list[str]) -> np.ndarray:
    """Rows whose lead is old enough to have a known 90-day outcome."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id::text FROM leads WHERE created_at + interval '90 days' <= "
            "(SELECT max(created_at) FROM leads)"
        ).fetchall()
    old = {r[0] for r in rows}
    return np.array([i in old for i in ids])


MODEL_COLUMNS = (
    "kind", "version", "method", "algorithm", "active", "horizon_days", "trained_from",
    "trained_to", "as_of", "n_leads", "n_positive", "n_negative", "metrics", "features", "params",
    "artifact", "artifact_format", "artifact_sha256",
)  # fmt: skip


def copy_model(source_url: str, target_url: str) -> None:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in MODEL_COLUMNS)
    with psycopg.connect(source_url) as src, psycopg.connect(target_url) as dst:
        row = src.execute(
            sql.SQL("SELECT {} FROM ai_models WHERE active").format(columns)
        ).fetchone()
        assert row is not None
        from psycopg.types.json import Jsonb

        values = [Jsonb(v) if isinstance(v, dict | list) else v for v in row]
        dst.execute(
            sql.SQL("INSERT INTO ai_models ({}) VALUES ({})").format(
                columns, sql.SQL(", ").join(sql.Placeholder() * len(values))
            ),
            values,
        )


# The two runs of the speed measurement: the daily run (open leads only; the first
# time, so every open lead gets its annotation), then every lead (the open ones scored
# again, the converted and lost ones given their outcome: --include-converted).
RUNS = (("open leads (plain `aicrm ai score`)", False), ("every lead (--include-converted)", True))


def speed(server: str, train_url: str, leads: int, keep: bool) -> dict[str, Any]:
    """Score a freshly generated CRM: its open leads (the first scoring: every open row
    gets its annotation), then, after a VACUUM, every lead (closed ones get their
    outcome)."""
    from aicrm.ai import scoring

    name = "benchai_score"
    url = fresh(server, name)
    try:
        generated = generate(url, leads, 3)
        copy_model(train_url, url)
        with psycopg.connect(url) as conn:
            history = conn.execute("SELECT count(*) FROM crm_history").fetchone()[0]  # type: ignore[index]
        runs = []
        for _label, every in RUNS:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM leads")
                conn.execute("CHECKPOINT")
                before = _leads_updates(conn)
                wal = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
            load = os.getloadavg()
            with psycopg.connect(url) as conn:
                result = scoring.score(conn, include_converted=every, lead_ids=None)
            with psycopg.connect(url, autocommit=True) as conn:
                after = _leads_updates(conn)
                recorded = conn.execute("SELECT count(*) FROM crm_history").fetchone()[0]  # type: ignore[index]
                wal_bytes = conn.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (wal,)
                ).fetchone()[0]  # type: ignore[index]
                entry = conn.execute(
                    "SELECT avg(pg_column_size(ai_annotations -> 'lead_scoring')) FROM "
                    "(SELECT ai_annotations FROM leads WHERE ai_score IS NOT NULL LIMIT 10000) l"
                ).fetchone()[0]  # type: ignore[index]
            runs.append(
                result.to_dict()
                | {
                    "load_before": load, "load_after": os.getloadavg(),
                    "hot_share": (after[1] - before[1]) / max(after[0] - before[0], 1),
                    "history_added": recorded - history, "wal_bytes": int(wal_bytes),
                    "entry_bytes": float(entry or 0),
                }
            )  # fmt: skip
        return {"runs": runs, "generate_seconds": round(generated, 1)}
    finally:
        if not keep:
            drop(server, name)


def _leads_updates(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """Updates of leads and how many of them were HOT, as counted so far."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    row = conn.execute(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'leads'"
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


ROADS = "Lead scoring: upgraded legacy database and small data"
# An upgraded legacy database: the generator's leads, conversions and contacts with
# their final statuses and backdated conversions, and no history; then what
# migration 010 writes (the creation and the conversion of each lead, reconstructed).
STRIP_HISTORY = "DELETE FROM crm_history"
RECONSTRUCT = "SELECT aicrm_reconstruct_lead_history()"
# What aicrm read before: today's status as the status at creation (a recorded
# creation carrying today's status), to show what the leakage alarm stops.
OLD_READING = """
INSERT INTO crm_history (table_name, row_id, operation, changed_at, actor, changes)
SELECT 'leads', id, 'insert', created_at, 'bench', jsonb_build_object('status', status)
FROM leads
"""


def legacy(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(STRIP_HISTORY)
        conn.execute(RECONSTRUCT)


def scored_on(stored: Any, test_url: str, cache: dict[str, Any]) -> tuple[float, float, float]:
    """AUC and Brier of ``stored`` on the test CRM's judged leads at creation, and the
    oracle's AUC."""
    from aicrm.ai import _features as feats, _model as learn, scoring

    with psycopg.connect(test_url) as conn:
        frame = feats.creation_frame(conn, stored.features, horizon=90)
        truth: dict[str, float] = dict(
            conn.execute("SELECT lead_id::text, p_convert_90d FROM sample_truth").fetchall()
        )
    ids = frame.lead_ids
    judged = _judged(test_url, ids)
    y = frame.labels[judged]  # type: ignore[index]
    p = scoring.predict(stored, frame, check=False).scores[judged]
    oracle = np.array([truth[i] for i in ids])[judged]
    cache.setdefault(test_url, learn.auc(y, oracle))
    return learn.auc(y, p), learn.brier(y, p), learn.auc(y, oracle)


def roads(server: str, leads: int, test_leads: int, small: int, keep: bool) -> list[str]:
    """The upgraded legacy road and the small-data road, each beside its baseline."""
    from aicrm.ai import scoring
    from aicrm.errors import UsageError

    out: list[str] = []
    cache: dict[str, Any] = {}
    names = ["benchai_legacy_train", "benchai_legacy_test", "benchai_small", "benchai_small_test"]
    try:
        train_url, test_url = fresh(server, names[0]), fresh(server, names[1])
        generate(train_url, leads, 1)
        generate(test_url, test_leads, 2)
        legacy(train_url)
        legacy(test_url)
        with psycopg.connect(train_url) as conn:
            now = conn.execute("SELECT max(created_at) FROM leads").fetchone()[0]  # type: ignore[index]
            load = os.getloadavg()
            result = scoring.train(conn, as_of=now)
            active = scoring.load_active(conn)
        auc, brier, oracle = scored_on(active, test_url, cache)
        held = result.model.metrics.get("holdout", {})
        out += [
            f"Upgraded legacy database: {leads:,} generated leads (seed 1) with final statuses, "
            "backdated conversions and contacts, their history deleted, then migration 010's "
            f"reconstruction; scored: {test_leads:,} more (seed 2), made legacy the same way, each "
            f"lead at its creation. Load before training: {_load(load)}.",
            "",
            "| what | AUC | ratio to oracle | Brier |",
            "|---|---:|---:|---:|",
            f"| oracle (`sample_truth`) | {oracle:.4f} | 1.000 | |",
            f"| active after training ({active.method}/{active.algorithm}), held-out CRM | "
            f"{auc:.4f} | **{auc / oracle:.3f}** | {brier:.4f} |",
            f"| reported by `aicrm ai train`: cross-validation at creation | "
            f"{result.model.metrics.get('auc', float('nan')):.4f} | | "
            f"{result.model.metrics.get('brier', float('nan')):.4f} |",
            f"| reported: time-based holdout (newest fifth) | {held.get('auc') or float('nan'):.4f}"
            f" | | {held.get('brier') or float('nan'):.4f} |",
            "",
            f"Targets: held-out AUC ≥ 0.9 × oracle: {'met' if auc >= 0.9 * oracle else 'NOT met'} "
            f"({auc / oracle:.3f}); reported quality within 0.03 of the held-out one: "
            f"{'met' if abs(result.model.metrics.get('auc', 0) - auc) <= 0.03 else 'NOT met'} "
            f"(|{result.model.metrics.get('auc', float('nan')):.4f} − {auc:.4f}| = "
            f"{abs(result.model.metrics.get('auc', float('nan')) - auc):.4f}). Gate: "
            f"{result.model.params.get('gate', {}).get('reason', 'n/a')}. Notes: "
            f"{' '.join(result.notes) or 'none'}",
        ]
        with psycopg.connect(train_url) as conn:
            conn.execute(OLD_READING)
            try:
                scoring.train(conn, as_of=now, activate=False)
                stopped = "NOT stopped: the old reading trained"
            except UsageError as exc:
                stopped = f"stopped: {exc.message}"
            conn.rollback()
        out += [
            "",
            "Baseline, the same run: the same database read the old way (today's status as "
            f"the status at creation) — training {stopped}",
        ]
        small_url, small_test = fresh(server, names[2]), fresh(server, names[3])
        generate(small_url, small, 1)
        generate(small_test, test_leads, 2)
        with psycopg.connect(small_url) as conn:
            now = conn.execute("SELECT max(created_at) FROM leads").fetchone()[0]  # type: ignore[index]
            result = scoring.train(conn, as_of=now)
            active = scoring.load_active(conn)
            prior = scoring.train(conn, as_of=now, force_prior=True, activate=False).model
        a_auc, a_brier, oracle = scored_on(active, small_test, cache)
        p_auc, p_brier, _o = scored_on(prior, small_test, cache)
        gate = result.model.params.get("gate", {})
        out += [
            "",
            f"Small data: {small:,} generated leads (seed 1, with their history; "
            f"{result.model.n_leads} labelled, {result.model.n_positive} converted); scored: "
            f"{test_leads:,} more (seed 2), at creation.",
            "",
            "| what | AUC | Brier |",
            "|---|---:|---:|",
            f"| the prior (smoothed rates by source and segment) | {p_auc:.4f} | {p_brier:.4f} |",
            f"| what the gate left active ({active.method}/{active.algorithm}) | {a_auc:.4f} | "
            f"{a_brier:.4f} |",
            f"| the trained model ({result.model.algorithm}), gate: "
            f"{'passed' if gate.get('passed') else 'refused'} | | |",
            "",
            f"Gate: {gate.get('reason', 'n/a')}. Target: never worse than the prior on the "
            f"holdout — {'met' if gate.get('passed') or active.method == 'prior' else 'NOT met'} "
            "(a model is active only when it beats the prior there).",
        ]
    finally:
        if not keep:
            for name in names:
                drop(server, name)
    return out


def write_section(path: Path, title: str, body: str) -> None:
    text = path.read_text() if path.exists() else (
        "# Benchmarks\n\nOne `##` section per benchmark, each with the command that produced "
        "it; re-running a benchmark replaces its own section only.\n"
    )  # fmt: skip
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {title}"), None)
    new = body.rstrip("\n").splitlines()
    if start is None:
        lines += ["", *new]
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = [*new, ""]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def _load(values: Any) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def machine(server: str) -> str:
    with psycopg.connect(server) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        settings = conn.execute(
            "SELECT current_setting('shared_buffers'), current_setting('work_mem'), "
            "current_setting('wal_buffers'), current_setting('max_wal_size'), "
            "current_setting('checkpoint_timeout')"
        ).fetchone()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPUs, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}; "
        f"PostgreSQL {version} (shared_buffers {settings[0]}, work_mem {settings[1]}, "  # type: ignore[index]
        f"wal_buffers {settings[2]}, max_wal_size {settings[3]}, "  # type: ignore[index]
        f"checkpoint_timeout {settings[4]})"  # type: ignore[index]
    )


def speed_section(
    scored: dict[str, Any], command: str, host: str, source: str, started: datetime,
    trained: int, point: Point,
) -> str:  # fmt: skip
    """The speed section of RESULTS.md."""
    first, second = scored["runs"]
    n_open, n_closed = first["scored"], second["closed"]
    total = n_open + n_closed
    rate = n_open / first["seconds"]
    body = [
        f"## {SPEED}", "",
        f"Command: `{command}`. {host} ({source}). Run {started:%Y-%m-%d %H:%M} UTC.", "",
        f"Training on {trained:,} leads: {point.train_seconds:.1f} s "
        f"({point.method}/{point.algorithm}, cross-validation and the search for interacting "
        "pairs included).", "",
        f"A generated CRM of {total:,} leads (seed 3): {n_open:,} open, {n_closed:,} converted "
        f"or lost; the model trained on {trained:,} leads copied in. First the daily run, "
        f"`aicrm ai score` (open leads only; the first time, so every open lead gets its "
        f"annotation): {first['seconds']:.1f} s = **{rate:,.0f} open leads/s** including the "
        f"write-back (old target ≥ 20,000 leads/s: {'met' if rate >= 20000 else 'NOT met'}). "
        f"Then, after a `VACUUM`, every lead (`--include-converted`: the open leads scored "
        f"again, every converted or lost lead given its outcome): {second['seconds']:.1f} s = "
        f"**{total / second['seconds']:,.0f} leads/s**.", "",
        "| step | open leads: seconds | leads/s | every lead: seconds | leads/s |",
        "|---|---:|---:|---:|---:|",
    ]  # fmt: skip
    steps = (
        ("outcomes", "outcomes of the converted and lost leads (one UPDATE)", "closed"),
        ("read", "read features of the open leads (binary COPY), predicting meanwhile", "scored"),
        ("predict", "of which predict + explain + annotation JSON (Python)", "scored"),
        ("write", "write back the scores (COPY + one UPDATE)", "scored"),
    )
    for key, label, counted in steps:
        cells = []
        for run in (first, second):
            seconds, count = run["timings"].get(key, 0.0), run[counted]
            rate = f"{count / seconds:,.0f}" if count else "—"
            cells.append(f"{seconds:.1f} | {rate}")
        body.append(f"| {label} | {cells[0]} | {cells[1]} |")
    body += [
        "",
        f"HOT updates of leads: {first['hot_share']:.0%} in the first run, "
        f"{second['hot_share']:.0%} in the second. Load average (1, 5, 15 min) before the "
        f"first run: {_load(first['load_before'])}, after it: {_load(first['load_after'])}; "
        f"after the second: {_load(second['load_after'])}. Rows the two runs added to "
        f"`crm_history`: {second['history_added']} (ai_* columns only changed). WAL written: "
        f"{first['wal_bytes'] / 2**30:.2f} GiB in the first run, "
        f"{second['wal_bytes'] / 2**30:.2f} GiB in the second. Size of a scored lead's "
        f"`lead_scoring` entry (`pg_column_size`): {first['entry_bytes']:.0f} bytes.",
    ]
    return "\n".join(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="200,1000,5000,20000,50000,100000")
    parser.add_argument("--test-leads", type=int, default=20000)
    parser.add_argument("--score-leads", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the benchai_* databases")
    parser.add_argument(
        "--roads", action="store_true",
        help="only the upgraded-legacy and small-data roads (--sizes: LEGACY,SMALL leads)",
    )  # fmt: skip
    parser.add_argument(
        "--speed-only", action="store_true",
        help="train on the largest size only, skip the quality curve (its section is kept)",
    )  # fmt: skip
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.speed_only:
        sizes = sizes[-1:]
    server, source = admin()
    started = datetime.now(UTC)
    command = "python " + shlex.join(["bench/bench_ai.py", *sys.argv[1:]])
    print(f"server: {source}", flush=True)
    if args.roads:
        legacy_leads, small = (sizes[0], sizes[1]) if len(sizes) >= 2 else (20000, 300)
        body = roads(server, legacy_leads, args.test_leads, small, args.keep)
        text = "\n".join([
            f"## {ROADS}", "",
            f"Command: `{command}`. {machine(server)} ({source}). Run {started:%Y-%m-%d %H:%M} "
            "UTC.", "", *body,
        ])  # fmt: skip
        print(text)
        write_section(args.results, ROADS, text)
        return 0
    test_url = fresh(server, "benchai_test")
    generate(test_url, args.test_leads if not args.speed_only else 2000, 2)
    cache: dict[str, Any] = {}
    points = []
    train_url = ""
    try:
        for n in sizes:
            train_url = fresh(server, f"benchai_train_{n}")
            generate(train_url, n, 1)
            point = evaluate(train_url, test_url, cache)
            points.append(point)
            print(
                f"{n:>7} leads: {point.method}/{point.algorithm} AUC {point.auc:.4f} vs oracle "
                f"{point.oracle_auc:.4f} (ratio {point.ratio:.3f}; ceiling without the intent "
                f"{point.ceiling_auc:.4f} = {point.ceiling_auc / point.oracle_auc:.3f}), one-hot "
                "logistic "
                f"{point.baseline_auc:.4f}; Brier {point.brier:.4f} vs "
                f"{point.oracle_brier:.4f}; AUC at day {LATER} {point.later_auc:.4f}; "
                f"trained in {point.train_seconds:.1f} s",
                flush=True,
            )
            if n != sizes[-1] and not args.keep:
                drop(server, f"benchai_train_{n}")
        scored = speed(server, train_url, args.score_leads, args.keep) if args.score_leads else None
    finally:
        if not args.keep:
            drop(server, "benchai_test")
            for n in sizes:
                drop(server, f"benchai_train_{n}")
    host = machine(server)
    lines = [
        f"## {QUALITY}", "",
        f"Command: `{command}` (from the repository root, with the project's venv). "
        f"{host} ({source}). Run {started:%Y-%m-%d %H:%M} UTC.", "",
        f"Each model is trained on a generated CRM of N leads (seed 1) and scores a second "
        f"CRM of {args.test_leads:,} leads (seed 2), each lead as of its creation; AUC and "
        "Brier are against the real 90-day outcomes of the leads judged (older than 90 "
        "days). The oracle scores with the true probabilities (`sample_truth`). The baseline "
        "is a plain one-hot logistic regression (scikit-learn's defaults) on the same rows "
        "and raw features, each training lead at its creation. AUC at day "
        f"{LATER}: the test leads still open {LATER} days after creation, scored as of "
        f"then (activities logged by then count), against conversion within 90 days "
        "after (no oracle for it). Ceiling: the truth without the hidden intent "
        "(`p_columns_90d`), the best ranking any model of the columns can reach; its ratio "
        "to the oracle is the highest ratio a model can score on these rows. Brier before "
        "replay: the model's scores without the Platt scaling fit on replays of past days "
        "(which is fit for the open leads of every age scored today, not for leads at "
        "creation).", "",
        "| leads | labelled (conversions) | method | AUC | oracle AUC | ratio | ceiling AUC "
        "(ratio) | one-hot logistic AUC | Brier | Brier before replay | oracle Brier | CV AUC "
        f"| AUC at day {LATER} | train s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for n, p in zip(sizes, points, strict=True):
        lines.append(
            f"| {n:,} | {p.leads:,} ({p.conversions:,}) | {p.method}/{p.algorithm} | "
            f"{p.auc:.4f} | {p.oracle_auc:.4f} | **{p.ratio:.3f}** | {p.ceiling_auc:.4f} "
            f"({p.ceiling_auc / p.oracle_auc:.3f}) | {p.baseline_auc:.4f} | {p.brier:.4f} | "
            f"{p.brier_unreplayed:.4f} | {p.oracle_brier:.4f} | {p.cv_auc:.4f} | "
            f"{p.later_auc:.4f} | {p.train_seconds:.1f} |"
        )
    at_50k = next((p for n, p in zip(sizes, points, strict=True) if n == 50000), None)
    if at_50k is not None:
        ratio_ok = at_50k.ratio >= 0.97
        beats = at_50k.auc >= at_50k.baseline_auc
        lines += [
            "",
            f"Target at 50k leads, AUC ≥ 0.97 × oracle: {'met' if ratio_ok else 'NOT met'} "
            f"({at_50k.ratio:.3f}"
            + ("" if ratio_ok else f", short by {0.97 - at_50k.ratio:.3f}")
            + f"); never below the one-hot logistic regression: {'met' if beats else 'NOT met'} "
            f"({at_50k.auc:.4f} vs {at_50k.baseline_auc:.4f}). The ceiling on these rows is "
            f"{at_50k.ceiling_auc / at_50k.oracle_auc:.3f} × oracle"
            + (
                " (below the target: no model of the columns can reach it)"
                if at_50k.ceiling_auc / at_50k.oracle_auc < 0.97
                else ""
            )
            + f"; the model reaches {at_50k.auc / at_50k.ceiling_auc:.3f} × the ceiling.",
        ]
    if not args.speed_only:
        write_section(args.results, QUALITY, "\n".join(lines))
    if scored is not None:
        write_section(
            args.results,
            SPEED,
            speed_section(scored, command, host, source, started, sizes[-1], points[-1]),
        )
    print(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
