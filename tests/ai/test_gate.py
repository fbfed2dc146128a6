"""The time-based holdout, the publish gate and the leakage alarm (aicrm.ai._gate):
a model that loses to the prior on the newest leads is stored inactive with the
reason, the prior stays or becomes active, and a feature that alone tells the
outcome stops training until it is left out, as the refusal advises."""

from __future__ import annotations

import random

import numpy as np
import pytest

from aicrm.ai import _gate as gate, scoring
from aicrm.errors import UsageError
from tests.ai.data import AS_OF, L, cli, insert
from tests.conftest import Database


def drifting(seed: int = 3) -> list[L]:
    """400 labelled leads: on the older four fifths, attribute ``signal`` = 1 converts
    at 60 % and 0 at 10 %; on the newest fifth, the other way round."""
    rng = random.Random(seed)
    leads = []
    for i in range(400):
        age = 100 + i  # i < 80: the newest fifth
        signal = rng.random() < 0.5
        rate = (0.1 if signal else 0.6) if i < 80 else (0.6 if signal else 0.1)
        converted = 10.0 if rng.random() < rate else None
        leads.append(
            L(rng.choice(["web", "event"]), age, converted, attributes={"signal": int(signal)})
        )
    return leads


def leaking(seed: int = 5) -> list[L]:
    """300 labelled leads whose attribute ``won_deal`` is filled in at conversion."""
    rng = random.Random(seed)
    leads = []
    for i in range(300):
        converted = 20.0 if rng.random() < 0.3 else None
        attributes = {"won_deal": int(converted is not None), "employees": rng.randint(5, 500)}
        leads.append(
            L(rng.choice(["web", "event", "ads"]), 100 + i, converted, attributes=attributes)
        )
    return leads


def test_judge_passes_a_model_that_beats_every_rival_and_shows_the_margins() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    good = np.array([0.1, 0.2, 0.1, 0.8, 0.7, 0.3, 0.9, 0.2])
    flat = np.full(8, 0.375)
    verdict = gate.judge(y, good, {"prior": flat})
    assert verdict.passed
    margins = verdict.to_dict()["margins"]["prior"]
    assert margins["log_loss"] > 0 and margins["auc"] == pytest.approx(0.5)


def test_judge_refuses_a_model_better_in_log_loss_only() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    ranked = np.array([0.1, 0.2, 0.1, 0.8, 0.7, 0.3, 0.9, 0.2])  # perfect order
    calibrated_but_worse_order = np.array([0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 0.3])
    verdict = gate.judge(y, calibrated_but_worse_order, {"active model": ranked})
    assert not verdict.passed
    assert "does not beat the active model" in verdict.reason


def test_judge_refuses_a_holdout_without_conversions() -> None:
    verdict = gate.judge(np.zeros(5), np.full(5, 0.2), {"prior": np.full(5, 0.1)})
    assert not verdict.passed and "no conversions" in verdict.reason


def test_a_model_that_loses_on_the_newest_leads_is_stored_inactive_and_the_prior_is_active(
    crm_db: Database,
) -> None:
    with crm_db.connect() as conn:
        insert(conn, drifting())
        result = scoring.train(conn, as_of=AS_OF, actor="test")
    assert result.model.method == "model"
    verdict = result.model.params["gate"]
    assert not verdict["passed"]
    assert "does not beat the prior" in verdict["reason"]
    assert verdict["margins"]["prior"]["auc"] < 0  # worse than the prior: drift reversed it
    assert any(n.startswith("Stored inactive") for n in result.notes)
    assert any("the prior" in n and "active instead" in n for n in result.notes)
    with crm_db.connect() as conn:
        active = scoring.load_active(conn)
        models = {m["version"]: m for m in scoring.list_models(conn)}
        assert active.method == "prior" and active.version == result.active_version
        assert not models[result.model.version]["active"]
        assert models[result.model.version]["gate"]["passed"] is False
        # scoring works on what is active
        assert scoring.score(conn, as_of=AS_OF, actor="test").method == "prior"
        # training again: the refused model does not replace the active prior either
        again = scoring.train(conn, as_of=AS_OF, actor="test")
        assert not again.model.params["gate"]["passed"]
        assert set(again.model.params["gate"]["rivals"]) == {"prior", "active model"}
        assert again.active_version == active.version
        assert any(f"{active.version} stays active" in n for n in again.notes)
        assert scoring.load_active(conn).version == active.version


@pytest.mark.slow
def test_the_gate_is_shown_by_the_cli(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        insert(conn, drifting())
    done = cli(crm_db, "ai", "train", "--as-of", AS_OF.isoformat())
    assert done.returncode == 0, done.stderr
    assert "(not active)" in done.stdout
    assert "holdout     AUC" in done.stdout
    assert "gate        refused: on the holdout of the newest 80 labelled leads" in done.stdout


@pytest.mark.slow
def test_a_feature_that_tells_the_outcome_stops_training_until_left_out_as_advised(
    crm_db: Database,
) -> None:
    with crm_db.connect() as conn:
        insert(conn, leaking())
        with pytest.raises(UsageError) as caught:
            scoring.train(conn, as_of=AS_OF, actor="test")
        message = str(caught.value)
        assert "Training stopped" in message and "'attr:won_deal', AUC 1.000" in message
        assert "employees" not in message
        assert "'aicrm ai train --exclude attr:won_deal'" in message
        assert conn.execute("SELECT count(*) FROM ai_models").fetchone() == (0,)
    # following the advice, on the command line
    done = cli(crm_db, "ai", "train", "--as-of", AS_OF.isoformat(), "--exclude", "attr:won_deal")
    assert done.returncode == 0, done.stderr
    assert "Left out as asked: attr:won_deal" in done.stdout
    stored = crm_db.execute("SELECT features FROM ai_models WHERE method = 'model'")
    names = [f["name"] for f in stored[0][0]]
    assert "attr:won_deal" not in names and "attr:employees" in names


@pytest.mark.slow
def test_the_leakage_alarm_exits_2_with_one_line_on_the_cli(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        insert(conn, leaking())
    done = cli(crm_db, "ai", "train", "--as-of", AS_OF.isoformat())
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "attr:won_deal" in done.stderr


def test_excluding_a_feature_that_does_not_exist_is_refused(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        insert(conn, leaking())
        with pytest.raises(Exception, match="No feature is named 'nope'"):
            scoring.train(conn, as_of=AS_OF, exclude=["nope"], actor="test")


@pytest.mark.slow
def test_if_stale_retrains_only_an_old_model(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        insert(conn, leaking())
    args = ("ai", "train", "--as-of", AS_OF.isoformat(), "--exclude", "attr:won_deal")
    first = cli(crm_db, *args, "--if-stale", "30")  # no model yet: trains
    assert first.returncode == 0, first.stderr
    stored = crm_db.scalar("SELECT count(*) FROM ai_models")
    assert stored >= 1
    again = cli(crm_db, *args, "--if-stale", "30")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("not retrained: the active model ls-")
    assert crm_db.scalar("SELECT count(*) FROM ai_models") == stored
    crm_db.execute("UPDATE ai_models SET created_at = created_at - interval '31 days'")
    old = cli(crm_db, *args, "--if-stale", "30")
    assert old.returncode == 0, old.stderr
    assert crm_db.scalar("SELECT count(*) FROM ai_models") > stored


@pytest.mark.slow
def test_a_converted_lead_is_not_explained_as_a_chance_to_convert(trained_db: Database) -> None:
    lead_id = str(trained_db.scalar("SELECT id FROM leads WHERE is_converted ORDER BY id LIMIT 1"))
    with trained_db.connect() as conn:
        found = scoring.explain(conn, lead_id, as_of=AS_OF)
    assert any("is converted" in w and "no chance to convert" in w for w in found.warnings)
    assert found.to_dict()["score"] is None  # more in tests/ai/test_closed.py


def test_mailbox_providers_and_disposable_domains_are_not_company_email(
    crm_db: Database,
) -> None:
    from aicrm.ai._features import Feature, creation_frame

    emails = ["a@hey.com", "b@fastmail.com", "c@zoho.com", "d@gmail.com", "e@mailinator.com",
              "f@acme-industries.com"]  # fmt: skip
    leads = [L("web", 100, email=e) for e in emails]
    with crm_db.connect() as conn:
        insert(conn, leads)
        kinds = ["free", "company", "disposable"]
        frame = creation_frame(conn, [Feature("email_kind", "category", categories=kinds)],
                               horizon=90, lead_ids=[str(x.id) for x in leads])  # fmt: skip
    by_id = dict(zip(frame.lead_ids, frame.values[:, 0], strict=True))
    found = [kinds[int(by_id[str(x.id)]) - 1] for x in leads]
    assert found == ["free", "free", "free", "free", "disposable", "company"]
