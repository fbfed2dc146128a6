"""``aicrm ai …`` (train, score, explain, models) and ``aicrm analyze conversions``.

Thin commands: the work is in :mod:`aicrm.ai`, imported inside each command so
``aicrm --help`` does not load numpy or scikit-learn.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from aicrm.cli import _output as output
from aicrm.cli._common import JsonOpt, actor, database, moment, replica_read
from aicrm.db import Connection
from aicrm.errors import InvalidInput

ai_app = typer.Typer(
    help="Lead scoring: train a model on the CRM's history, score leads, explain a score.",
    no_args_is_help=True,
)
analyze_app = typer.Typer(help="Analyses of the CRM's data.", no_args_is_help=True)

HorizonOpt = Annotated[
    int, typer.Option(min=1, max=3650, help="Days after scoring within which a conversion counts.")
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="Pretend it is this moment (ISO 8601); default: now."),
]


@ai_app.command()
def train(
    horizon: HorizonOpt = 90,
    since: Annotated[
        str | None, typer.Option(help="Learn only from leads created on or after this date.")
    ] = None,
    as_of: AsOfOpt = None,
    prior: Annotated[
        bool, typer.Option("--prior", help="Store the smoothed-rates prior, not a model.")
    ] = False,
    activate: Annotated[
        bool,
        typer.Option(
            help="Make the new model the one 'aicrm ai score' uses, if it passes the publish "
            "gate (it beats the prior and the active model on the newest fifth of the leads)."
        ),
    ] = True,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Leave this feature out (repeatable), e.g. status."),
    ] = None,
    if_stale: Annotated[
        int | None,
        typer.Option(
            "--if-stale",
            min=0,
            metavar="DAYS",
            help="Train only if the active model is older than DAYS days (or there is none): "
            "for scheduled retraining.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Learn from the CRM's history which leads convert, and store the model."""
    from aicrm.ai import scoring

    if if_stale is not None:
        with database() as conn:
            fresh = scoring.fresh_model(conn, if_stale)
        if fresh is not None:
            if as_json:
                output.emit_json({"retrained": False, "active_version": fresh.version,
                                  "created_at": fresh.created_at.isoformat()})  # fmt: skip
            else:
                output.say(
                    f"not retrained: the active model {fresh.version} was trained on "
                    f"{fresh.created_at:%Y-%m-%d}, less than {if_stale} days ago"
                )
            return
    with database() as conn, output.progress(not as_json) as step:
        result = scoring.train(
            conn, horizon=horizon, since=moment(since, "date"), as_of=moment(as_of),
            force_prior=prior, activate=activate, exclude=exclude or (), actor=actor(),
            progress=step,
        )  # fmt: skip
    if as_json:
        output.emit_json(result.to_dict())
        return
    model = result.model
    metrics = model.metrics
    state = "active" if result.active_version == model.version else "not active"
    output.say(f"model {model.version} ({state})")
    what = "smoothed conversion rates by source and segment (the prior)"
    if model.method == "model":
        what = f"{model.algorithm}, chosen by cross-validation"
    output.say(f"  method      {what}")
    output.say(
        f"  learned on  {model.n_leads} leads created "
        f"{_day(model.trained_from)} – {_day(model.trained_to)}: {model.n_positive} converted "
        f"within {model.horizon} days, {model.n_negative} did not "
        f"({result.observations} observations)"
    )
    output.say(
        f"  quality     AUC {_num(metrics.get('auc'))}, Brier {_num(metrics.get('brier'))}, "
        f"calibration error {_num(metrics.get('calibration_error'))} "
        f"({metrics.get('evaluated_on', '')})"
    )
    held = metrics.get("holdout")
    if isinstance(held, dict):
        output.say(
            f"  holdout     AUC {_num(held.get('auc'))}, Brier {_num(held.get('brier'))}, "
            f"log loss {_num(held.get('log_loss'))} (the newest {held.get('leads')} labelled "
            "leads, at creation, kept out of fitting)"
        )
    gate = model.params.get("gate")
    if isinstance(gate, dict):
        verdict = "passed" if gate.get("passed") else "refused"
        output.say(f"  gate        {verdict}: {gate.get('reason')}")
    if model.method == "model":
        table = Table(title="candidates (cross-validated)", show_lines=False)
        for column in ("candidate", "log loss", "AUC at creation", "AUC all", "chosen"):
            table.add_column(column)
        for c in result.candidates:
            params = ", ".join(f"{k}={v}" for k, v in c["params"].items())
            m = c["metrics"]
            table.add_row(
                f"{c['name']} {params}".strip(), _num(m.get("log_loss")), _num(m.get("auc")),
                _num(m.get("auc_all_observations")), "✓" if c["chosen"] else "",
            )  # fmt: skip
        output.stdout.print(table)
    for note in result.notes:
        output.say(f"note: {note}")
    output.say(f"took {result.seconds:.1f} s; next: aicrm ai score")


@ai_app.command()
def score(
    lead: Annotated[
        list[str] | None, typer.Option("--lead", help="Score only this lead (repeatable).")
    ] = None,
    include_converted: Annotated[
        bool,
        typer.Option(
            "--include-converted",
            help="Also write every converted or lost lead's outcome ('converted on DATE'), "
            "never a score, and clear its ai_score.",
        ),
    ] = False,
    top: Annotated[int, typer.Option(min=1, max=10, help="Factors kept per lead.")] = 3,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score open leads with the active model; writes ai_score and the annotation.
    With --lead, shows each lead's score trend too."""
    from aicrm.ai import scoring, trend

    # All leads: their features are read on the replica when there is one fresh
    # enough; leads named by id are read on the primary (the caller may just have
    # written them). The model and the write-back are always the primary's.
    reading: AbstractContextManager[Connection | None]
    reading = replica_read() if lead is None else nullcontext(None)
    with database() as conn, reading as read, output.progress(not as_json) as step:
        result = scoring.score(
            conn, lead_ids=lead, include_converted=include_converted, top=top,
            as_of=moment(as_of), actor=actor(), progress=step, read=read,
        )  # fmt: skip
        trends = {key: trend.trend(conn, key) for key in lead or []}
    if as_json:
        shown = {key: [p.to_dict() for p in points] for key, points in trends.items()}
        output.emit_json(result.to_dict() | ({"trends": shown} if lead else {}))
        return
    rate = f" ({result.scored / result.seconds:,.0f} leads/s)" if result.seconds > 0 else ""
    output.say(
        f"scored {result.scored:,} leads with {result.version} ({result.method}) in "
        f"{result.seconds:.1f} s{rate}"
    )
    output.say("  tiers  " + "  ".join(f"{tier}: {count}" for tier, count in result.tiers.items()))
    if result.closed:
        output.say(
            f"  {result.closed:,} converted or lost leads not scored: their outcome is written "
            "instead, and ai_score cleared"
        )
    for warning in result.warnings:
        output.say(f"warning: {warning}")
    for key, points in trends.items():
        steps = " → ".join(f"{p.score:.0%} ({p.scored_at:%Y-%m-%d})" for p in points)
        output.say(f"  trend of {key}: {steps or 'no score recorded'}")


@ai_app.command()
def explain(
    lead_id: Annotated[str, typer.Argument(help="The lead's id (a UUID).")],
    as_json: JsonOpt = False,
) -> None:
    """Why a lead gets its score: each factor's effect on the odds."""
    from aicrm.ai import scoring

    with database() as conn:
        found = scoring.explain(conn, lead_id)
    if as_json:
        output.emit_json(found.to_dict())
        return
    output.say(f"{found.name} ({found.lead_id}), status {found.status}")
    if found.outcome is not None:
        output.say(
            f"not scored: {found.outcome.summary} (no chance to convert is left); the factors "
            f"are what model {found.version} gives its features"
        )
    else:
        output.say(
            f"score {found.score:.1%} of converting within {found.horizon} days: tier {found.tier} "
            f"(the average lead: {found.base_rate:.1%}; model {found.version}, {found.method})"
        )
    if found.method == "prior":
        output.say("  (a smoothed prior by source and segment: too few conversions for a model)")
    table = Table(show_lines=False)
    table.add_column("factor")
    table.add_column("value")
    table.add_column("log-odds", justify="right")
    table.add_column("effect")
    for factor in found.factors:
        effect = "—"
        if abs(factor.contribution) >= 0.01:
            direction = "raises" if factor.contribution > 0 else "lowers"
            effect = f"{direction} the odds ×{_odds(factor.contribution)}"
        table.add_row(factor.said, _value(factor.value), f"{factor.contribution:+.2f}", effect)
    output.stdout.print(table)
    for warning in found.warnings:
        output.say(f"warning: {warning}")


@ai_app.command()
def models(as_json: JsonOpt = False) -> None:
    """List the stored lead-scoring models, newest first."""
    from aicrm.ai import scoring

    with database() as conn:
        rows = scoring.list_models(conn)
    if as_json:
        output.emit_json(rows)
        return
    table = Table(title="lead-scoring models")
    for column in ("version", "method", "algorithm", "leads", "conversions", "AUC", "active",
                   "gate"):  # fmt: skip
        table.add_column(column)
    for r in rows:
        gate = r.get("gate")
        verdict = "" if not isinstance(gate, dict) else "passed" if gate.get("passed") else (
            f"refused: {gate.get('reason')}"
        )  # fmt: skip
        table.add_row(
            r["version"], r["method"], r["algorithm"], str(r["leads"]), str(r["conversions"]),
            _num(r["auc"]), "✓" if r["active"] else "", verdict,
        )  # fmt: skip
    output.stdout.print(table)


@analyze_app.command()
def conversions(
    horizon: HorizonOpt = 90,
    recent_days: Annotated[
        int, typer.Option(min=7, max=730, help="The recent window compared with the past.")
    ] = 90,
    as_of: AsOfOpt = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Conversion rates, time to convert, the funnel, drivers and changes."""
    from aicrm.ai import analysis

    with database(read_only=True) as conn, output.progress(not as_json) as step:
        step("analysing conversions")
        report = analysis.analyze(
            conn, horizon=horizon, recent_days=recent_days, as_of=moment(as_of)
        )
    if html is not None:
        from aicrm.ai import report_html

        if html.is_dir():
            raise InvalidInput(f"{html} is a folder; give a file name such as report.html.")
        html.write_text(report_html.render(report), encoding="utf-8")
    if as_json:
        output.emit_json(report.to_dict())
        return
    _show_analysis(report.to_dict())
    if html is not None:
        output.say(f"report written to {html}")


def _show_analysis(data: dict[str, Any]) -> None:
    output.say(
        f"{data['leads']} leads, {data['labelled']} old enough to judge ({data['horizon_days']}"
        f"-day horizon, as of {str(data['as_of'])[:10]}): {data['overall']['rate']:.1%} "
        f"converted within the horizon"
    )
    for key, title in (("by_source", "source"), ("by_industry", "industry"),
                       ("by_cohort", "monthly cohort")):  # fmt: skip
        table = Table(title=f"conversion by {title} (95 % Wilson interval)")
        for column in (title, "leads", "converted", "rate", "95 % CI", "median days", "p90 days"):
            table.add_column(column, justify="left" if column == title else "right")
        for row in data[key]:
            table.add_row(
                str(row["segment"]), str(row["leads"]), str(row["converted"]),
                f"{row['rate']:.1%}", f"{row['ci_low']:.1%} – {row['ci_high']:.1%}",
                _num(row.get("median_days"), 1), _num(row.get("p90_days"), 1),
            )  # fmt: skip
        output.stdout.print(table)
    table = Table(title="funnel (from the status history)")
    for column in ("stage", "reached", "of previous", "drop-off", "median days in stage"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in data["funnel"]:
        table.add_row(
            row["stage"], str(row["reached"]), _pct(row.get("share_of_previous")),
            _pct(row.get("drop_off")), _num(row.get("median_days"), 1),
        )  # fmt: skip
    output.stdout.print(table)
    drivers = data["drivers"]
    output.say(f"drivers ({drivers['source']}):")
    for line in drivers["sentences"]:
        output.say(f"  • {line}")
    changes = data["changes"]
    output.say(f"changes: {changes['test']}")
    if not changes["segments"]:
        output.say("  no segment's recent conversion rate differs significantly from its past")
    for row in changes["segments"]:
        output.say(f"  • {row['sentence']}")


def _day(value: Any) -> str:
    return f"{value:%Y-%m-%d}" if value is not None else "?"


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "–"


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "–"


def _odds(contribution: float) -> str:
    import math

    return f"{math.exp(contribution):.2f}"


def _value(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    return str(value)
