"""Lead scoring: training, bulk scoring, explanations, the fallback and bad input."""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
import pytest

from aicrm.ai import _bulk as bulk, _features as F, _model as M, scoring
from aicrm.errors import InvalidInput, NotFound, UsageError
from tests.ai.data import AS_OF, L, generated, insert
from tests.conftest import Database

pytestmark = pytest.mark.slow  # the module's fixture generates a CRM and trains (~10 s)


def test_training_stores_a_model_with_its_window_metrics_and_features(
    trained_db: Database,
) -> None:
    row = trained_db.execute(
        "SELECT method, algorithm, active, horizon_days, trained_from, trained_to, as_of, "
        "n_leads, n_positive, n_negative, metrics, features, params, artifact, artifact_format, "
        "artifact_sha256 FROM ai_models"
    )
    assert len(row) == 1
    (method, algorithm, active, horizon, first, last, as_of, n, pos, neg, metrics, feats,
     params, blob, fmt, sha) = row[0]  # fmt: skip
    assert (method, active, horizon, fmt) == ("model", True, 90, "npz")
    assert algorithm in ("logistic", "boosting")
    assert as_of == AS_OF and first < last and n == pos + neg and pos >= 25
    assert 0.6 < metrics["auc"] <= 1 and 0 < metrics["brier"] < 0.25
    assert len(params["calibration"]) == 10 and "calibration_error" in metrics
    names = {f["name"] for f in feats}
    assert {"source", "status", "contacts", "attr:industry", "attr:employees"} <= names
    # the generator's form answer, on about 39 % of the leads, found by the attributes'
    # profiling alone: a category with its four answers (absent: "(missing)")
    timeline = next(f for f in feats if f["name"] == "attr:purchase_timeline")
    assert timeline["kind"] == "category"
    assert set(timeline["categories"]) == {"this quarter", "this year", "next year",
                                           "just researching"}  # fmt: skip
    assert hashlib.sha256(bytes(blob)).hexdigest() == sha
    with np.load(io.BytesIO(bytes(blob)), allow_pickle=False) as data:  # plain arrays only
        assert all(data[k].dtype != object for k in data.files)


def test_scoring_writes_scores_tiers_and_factors_set_based(trained_db: Database) -> None:
    with trained_db.connect() as conn:
        result = scoring.score(conn, as_of=AS_OF, actor="test")
    open_leads = trained_db.scalar(
        "SELECT count(*) FROM leads WHERE status IN "
        "(SELECT name FROM lead_statuses WHERE category = 'open')"
    )
    assert result.scored == open_leads and sum(result.tiers.values()) == open_leads
    assert (
        trained_db.scalar(
            "SELECT count(*) FROM leads WHERE ai_score IS NOT NULL AND status NOT IN "
            "(SELECT name FROM lead_statuses WHERE category = 'open')"
        )
        == 0
    )
    rows = trained_db.execute(
        "SELECT ai_score, ai_annotations -> 'lead_scoring' FROM leads WHERE status IN "
        "(SELECT name FROM lead_statuses WHERE category = 'open')"
    )
    for score, entry in rows:
        assert set(entry) == {"model", "version", "produced_at", "confidence", "values"}
        values = entry["values"]
        assert values["method"] == "model" and values["tier"] in "ABCD"
        assert values["horizon_days"] == 90 and entry["version"] == result.version
        assert abs(values["score"] - score) < 1e-4 and 0 < score < 1
        assert values["as_of"] == AS_OF.isoformat()  # asked for: written (not when "now")
        factors = values["factors"]  # compact: [feature, value, contribution]
        assert len(factors) == 3 and all(len(f) == 3 for f in factors)
        sizes = [abs(f[2]) for f in factors]
        assert sizes == sorted(sizes, reverse=True)
        readable = scoring.stored_factors(values)
        assert [f["feature"] for f in readable] == [f[0] for f in factors]
        assert all({"feature", "label", "value", "contribution"} <= set(f) for f in readable)
    # lean: the entry stays well under the lead row it is added to (HOT updates, WAL)
    size = trained_db.scalar(
        "SELECT max(pg_column_size(ai_annotations -> 'lead_scoring')) FROM leads"
    )
    assert size < 520


def test_scoring_in_small_frames_writes_what_one_frame_writes_and_no_history(
    trained_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = trained_db.execute(
        "SELECT id FROM leads WHERE status IN "
        "(SELECT name FROM lead_statuses WHERE category = 'open') ORDER BY id LIMIT 1"
    )
    lead = str(one[0][0])
    with trained_db.connect() as conn:
        from aicrm.ai import annotations

        annotations.annotate(
            conn, "leads", lead, "email_classifier", model="clf", version="1",
            values={"intent": "buy"},
        )  # fmt: skip
    history = trained_db.scalar("SELECT count(*) FROM crm_history")
    with trained_db.connect() as conn:
        whole = scoring.score(conn, as_of=AS_OF, actor="test")
    first = dict(
        trained_db.execute("SELECT id, ai_annotations -> 'lead_scoring' -> 'values' FROM leads")
    )
    monkeypatch.setattr(bulk, "CHUNK", 97)  # many frames, the last one short
    with trained_db.connect() as conn:
        framed = scoring.score(conn, as_of=AS_OF, actor="test")
    again = dict(
        trained_db.execute("SELECT id, ai_annotations -> 'lead_scoring' -> 'values' FROM leads")
    )
    assert framed.scored == whole.scored > 97 and framed.tiers == whole.tiers
    assert again == first
    assert trained_db.scalar("SELECT count(*) FROM crm_history") == history  # ai_* only
    kept = trained_db.scalar("SELECT ai_annotations FROM leads WHERE id = %s", (lead,))
    assert kept["email_classifier"]["values"] == {"intent": "buy"}
    assert kept["lead_scoring"]["values"]["score"] is not None


def test_scores_rank_the_true_probabilities(trained_db: Database) -> None:
    with trained_db.connect() as conn:
        stored = scoring.load_active(conn)
        frame = F.creation_frame(conn, stored.features, horizon=90)
        truth: dict[str, float] = {
            str(k): float(v)  # type: ignore[arg-type]
            for k, v in conn.execute("SELECT lead_id::text, p_convert_90d FROM sample_truth")
        }
    predicted = scoring.predict(stored, frame).scores
    oracle = np.array([truth[i] for i in frame.lead_ids])
    labels = frame.labels
    assert labels is not None
    assert M.auc(labels, predicted) > 0.85 * M.auc(labels, oracle)
    assert np.corrcoef(predicted, oracle)[0, 1] > 0.5


def test_an_explanation_adds_up_to_the_score(trained_db: Database) -> None:
    lead_id = str(trained_db.scalar(
        "SELECT id FROM leads WHERE status = 'qualified' ORDER BY id LIMIT 1"
    ))  # fmt: skip
    with trained_db.connect() as conn:
        scoring.score(conn, lead_ids=[lead_id], as_of=AS_OF)
        found = scoring.explain(conn, lead_id, as_of=AS_OF)
    total = found.bias + sum(f.contribution for f in found.factors)
    assert math.isclose(1 / (1 + math.exp(-total)), found.score, rel_tol=1e-9)
    assert found.stored is not None and found.stored["values"]["tier"] == found.tier
    assert math.isclose(found.stored["values"]["score"], found.score, abs_tol=1e-4)
    stored = found.stored["values"]["factors"]  # spelled out for readers
    assert [f["feature"] for f in stored] == [f.feature for f in found.factors[:3]]
    assert stored[0]["label"] == found.factors[0].label
    assert math.isclose(stored[0]["contribution"], found.factors[0].contribution, rel_tol=1e-3)
    status = next(f for f in found.factors if f.feature == "status")
    assert status.value == "qualified"
    sizes = [abs(f.contribution) for f in found.factors]
    assert sizes == sorted(sizes, reverse=True)
    assert "odds" in found.factors[0].words


def test_a_converted_lead_named_gets_its_outcome_not_a_score(trained_db: Database) -> None:
    lead_id = str(trained_db.scalar("SELECT id FROM leads WHERE is_converted LIMIT 1"))
    with trained_db.connect() as conn:
        result = scoring.score(conn, lead_ids=[lead_id], as_of=AS_OF)
    assert (result.scored, result.closed) == (0, 1)  # more in tests/ai/test_closed.py
    assert trained_db.scalar("SELECT ai_score FROM leads WHERE id = %s", (lead_id,)) is None


def test_unknown_or_malformed_lead_ids_are_refused(trained_db: Database) -> None:
    with trained_db.connect() as conn:
        with pytest.raises(NotFound, match="No lead has id"):
            scoring.explain(conn, "3f2b8c1e-7d4a-4f6b-9a51-2c0e8d7b6a10")
        with pytest.raises(NotFound):
            scoring.score(conn, lead_ids=["3f2b8c1e-7d4a-4f6b-9a51-2c0e8d7b6a10"])
        with pytest.raises(InvalidInput, match="not a valid lead id"):
            scoring.explain(conn, "42")


def test_a_model_trained_on_other_columns_is_refused(trained_db: Database) -> None:
    trained_db.execute(
        "UPDATE ai_models SET params = jsonb_set(params, '{lead_columns}', "
        "params -> 'lead_columns' || '[\"lead_grade\"]')"
    )
    with trained_db.connect() as conn, pytest.raises(UsageError, match=r"lead_grade.*retrain"):
        scoring.score(conn, as_of=AS_OF)


def test_a_model_of_another_feature_set_or_corrupted_is_refused(trained_db: Database) -> None:
    trained_db.execute("UPDATE ai_models SET params = params || '{\"feature_set\": 99}'")
    with trained_db.connect() as conn, pytest.raises(UsageError, match="feature set 99"):
        scoring.load_active(conn)
    trained_db.execute(
        "UPDATE ai_models SET params = jsonb_set(params, '{feature_set}', to_jsonb(%s::int)), "
        "artifact = artifact || '\\x00'::bytea",
        (F.FEATURE_SET,),
    )
    with trained_db.connect() as conn, pytest.raises(UsageError, match="checksum"):
        scoring.load_active(conn)


def test_a_pickled_artifact_is_never_loaded() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, m_coef=np.array([object()], dtype=object), calibration=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="allow_pickle"):
        M.Scorer.from_npz("logistic", buffer.getvalue())


def test_an_attribute_missing_today_counts_as_unknown_with_a_warning(
    trained_db: Database,
) -> None:
    trained_db.execute("UPDATE leads SET attributes = attributes - 'budget' WHERE NOT is_converted")
    with trained_db.connect() as conn:
        result = scoring.score(conn, as_of=AS_OF)
    assert any("'budget'" in w for w in result.warnings)
    assert result.scored > 0


def test_retraining_activates_the_new_model(trained_db: Database) -> None:
    with trained_db.connect() as conn:
        again = scoring.train(conn, as_of=AS_OF, force_prior=True)
        assert scoring.load_active(conn).version == again.model.version
        assert len(scoring.list_models(conn)) == 2
    assert trained_db.scalar("SELECT count(*) FROM ai_models WHERE active") == 1


# --- the fallback and bad input: small hand-made CRMs ------------------------------


def _small(db: Database, n: int, rate: float, sources: tuple[str, ...] = ("web", "referral")):
    leads = []
    for i in range(n):
        source = sources[i % len(sources)]
        converts = (i * 7919 % 100) < rate * 100 * (1.6 if source == "referral" else 0.6)
        leads.append(
            L(source, age=100 + i % 200, converted=20 if converts else None,
              industry=("tech", "retail")[i // 2 % 2], path=[(3, "contacted")],
              attributes={"employees": 10 + i % 50})
        )  # fmt: skip
    with db.connect() as conn:
        insert(conn, leads)


def test_below_the_data_minimum_the_score_is_a_marked_prior(crm_db: Database) -> None:
    _small(crm_db, 120, 0.3)
    with crm_db.connect() as conn:
        result = scoring.train(conn, as_of=AS_OF)
        assert result.model.method == "prior" and "minimum" in result.notes[0]
        crm_db.execute(
            "INSERT INTO leads (source, attributes, created_at) "
            "VALUES ('referral', '{\"industry\": \"tech\"}', %s)", (AS_OF,)
        )  # fmt: skip
        scoring.score(conn, as_of=AS_OF)
        lead_id = str(crm_db.scalar("SELECT id FROM leads WHERE created_at = %s", (AS_OF,)))
        found = scoring.explain(conn, lead_id, as_of=AS_OF)
    entry = crm_db.scalar(
        "SELECT ai_annotations -> 'lead_scoring' FROM leads WHERE id = %s", (lead_id,)
    )
    assert entry["values"]["method"] == "prior" and entry["model"] == "lead_scoring"
    prior = result.model.prior
    assert prior is not None
    referral = prior.sources["referral"]
    tech = prior.segments["referral"]["tech"]
    expected_source = (referral[1] + scoring.PRIOR_STRENGTH * prior.overall) / (
        referral[0] + scoring.PRIOR_STRENGTH
    )
    expected = (tech[1] + scoring.PRIOR_STRENGTH * expected_source) / (
        tech[0] + scoring.PRIOR_STRENGTH
    )
    assert math.isclose(found.score, expected, rel_tol=1e-9)
    assert {f.feature for f in found.factors} == {"source", "attr:industry"}
    assert math.isclose(entry["confidence"], tech[0] / (tech[0] + scoring.PRIOR_STRENGTH),
                        abs_tol=1e-4)  # fmt: skip


def test_no_conversions_fall_back_to_the_prior(crm_db: Database) -> None:
    _small(crm_db, 60, 0.0)
    with crm_db.connect() as conn:
        result = scoring.train(conn, as_of=AS_OF)
    assert result.model.method == "prior"
    assert "none of the 60 labelled leads converted" in result.notes[0]


def test_an_empty_crm_is_refused_clearly(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with pytest.raises(UsageError, match="no leads yet"):
            scoring.train(conn)
        with pytest.raises(NotFound, match="aicrm ai train"):
            scoring.score(conn)


def test_leads_too_young_to_learn_from_are_refused_clearly(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        insert(conn, [L("web", age=10), L("web", age=20, converted=5)])
        with pytest.raises(UsageError, match="old enough"):
            scoring.train(conn, as_of=AS_OF)


def test_a_single_source_still_trains_a_model(crm_db: Database) -> None:
    generated(crm_db, 1500, seed=3)
    with crm_db.connect() as conn:
        conn.execute("ALTER TABLE leads DISABLE TRIGGER aicrm_guard_converted_lead")
        conn.execute("UPDATE leads SET source = 'web'")
        conn.execute("ALTER TABLE leads ENABLE TRIGGER aicrm_guard_converted_lead")
        conn.commit()
        result = scoring.train(conn, as_of=AS_OF)
        assert result.model.method == "model"
        assert any("source" in note for note in result.notes)  # left out: one value only
        assert scoring.score(conn, as_of=AS_OF).scored > 0


def test_bad_options_are_refused(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with pytest.raises(InvalidInput, match="horizon"):
            scoring.train(conn, horizon=0)
        with pytest.raises(InvalidInput, match="Landmarks"):
            scoring.train(conn, landmarks=(30,))


@pytest.mark.parametrize(
    "current",
    [
        "{}",
        '{"email_classifier": {"model": "clf", "values": {"intent": "buy"}}}',
        '{"lead_scoring": {"model": "old", "extra": 1, "values": {"score": 0.1, "kept": 2}}, '
        '"other": {"values": {}}}',
        '{"lead_scoring": "not an object"}',
        "[1, 2]",
        '"text"',
        "null",
    ],
)
def test_the_write_back_merges_as_aicrm_annotate_does(crm_db: Database, current: str) -> None:
    """WRITE_BACK spells out aicrm_annotate(…, merge_values => false) with jsonb
    operators (a function call per row costs seconds per million leads)."""
    entry = (
        '{"model": "lead_scoring", "version": "v2", "produced_at": "2026-01-01T00:00:00Z", '
        '"confidence": 0.5, "values": {"score": 0.25, "tier": "B", '
        '"factors": [["status", "new", -0.5]]}}'
    )
    crm_db.execute("INSERT INTO leads (source) VALUES ('web')")
    with crm_db.connect() as conn:
        conn.execute("CREATE TEMP TABLE s (id uuid, score float8, entry jsonb)")
        conn.execute("INSERT INTO s SELECT id, 0.25, %s::jsonb FROM leads", (entry,))
        conn.execute("UPDATE leads SET ai_annotations = %s::jsonb", (current,))
        expected = conn.execute(
            "SELECT aicrm_annotate(%s::jsonb, 'lead_scoring', %s::jsonb, false)", (current, entry)
        ).fetchone()
        from psycopg import sql

        conn.execute(
            sql.SQL(scoring.WRITE_BACK).format(staging=sql.Identifier("s")),
            {"annotator": scoring.ANNOTATOR},
        )
        got = conn.execute("SELECT ai_annotations, ai_score FROM leads").fetchone()
    assert expected is not None and got is not None
    assert got[0] == expected[0] and got[1] == 0.25


def test_stored_factors_read_the_compact_and_the_older_form() -> None:
    compact = {"factors": [["attr:company_size", "11-50", 0.42], ["age_days", None, -1.5]]}
    assert scoring.stored_factors(compact) == [
        {"feature": "attr:company_size", "label": "Company size", "value": "11-50",
         "contribution": 0.42},
        {"feature": "age_days", "label": "Age (days)", "value": None, "contribution": -1.5},
    ]  # fmt: skip
    older = {"factors": [{"feature": "status", "label": "Status", "value": "new",
                          "contribution": -0.3}]}  # fmt: skip
    assert scoring.stored_factors(older) == older["factors"]
    assert scoring.stored_factors({"factors": [["bad"], 3, {"x": 1}]}) == []
    assert scoring.stored_factors(None) == []
    entry = {"model": "lead_scoring", "values": compact | {"score": 0.3}}
    assert scoring.readable(entry)["values"]["factors"][0]["label"] == "Company size"
    assert scoring.readable(entry)["values"]["score"] == 0.3
    assert scoring.readable("x") == "x"
