"""``aicrm report …`` (conversions, a client's leads, the funnel) and ``aicrm sample …``.

Two Typer apps: :data:`app` for reports and :data:`sample_app` for generating a
realistic CRM to try aicrm on. Each report prints a table at a terminal,
tab-separated lines with a header when piped, and JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from aicrm.cli import _output as output
from aicrm.cli._common import JsonOpt, database, moment
from aicrm.crm import reports
from aicrm.errors import UsageError
from aicrm.sample import crm

app = typer.Typer(
    help="Reports: conversions per source, a client's leads, the status funnel.",
    no_args_is_help=True,
)
sample_app = typer.Typer(
    help="Sample data: a realistic CRM, with a ground truth, to try aicrm on.",
    no_args_is_help=True,
)

CONVERSIONS = (
    ("source", "source"), ("total_leads", "leads"), ("converted_leads", "converted"),
    ("active_leads", "active"), ("conversion_rate", "rate"),
    ("avg_days_to_convert", "avg days to convert"),
)  # fmt: skip
CLIENT_HISTORY = (
    ("lead_id", "lead"), ("lead_email", "email"), ("lead_source", "source"),
    ("lead_created_at", "created"), ("conversion_date", "converted"),
    ("days_to_convert", "days"),
)  # fmt: skip
FUNNEL = (
    ("status", "status"), ("reached", "reached"), ("current", "now"),
    ("drop_off", "drop-off"), ("median_days", "median days in status"),
)  # fmt: skip
PERCENT = ("conversion_rate", "drop_off")


def cell(key: str, value: Any) -> str:
    """A value as a person reads it: thousands separators, percentages, days with
    one decimal, timestamps to the minute."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{100 * value:.1f} %" if key in PERCENT else f"{value:,.1f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value)


def table(rows: Sequence[reports.Report], columns: Sequence[tuple[str, str]], title: str) -> Table:
    """A Rich table of report rows; numbers right-aligned."""
    shown = Table(title=title, title_justify="left")
    numeric = {
        key for key, _ in columns if any(isinstance(getattr(row, key), int | float) for row in rows)
    }
    for key, header in columns:
        shown.add_column(header, justify="right" if key in numeric else "left")
    for row in rows:
        shown.add_row(*(Text(output.printable(cell(key, getattr(row, key)))) for key, _ in columns))
    return shown


def show(
    rows: Sequence[reports.Report],
    columns: Sequence[tuple[str, str]],
    as_json: bool,
    title: str,
) -> None:
    """JSON, a table at a terminal, or tab-separated lines when piped."""
    if as_json:
        output.emit_json([row.to_dict() for row in rows])
        return
    if not output.stdout.is_terminal:
        lines = ["\t".join(key for key, _ in columns)]
        for row in rows:
            data = row.to_dict()
            lines.append("\t".join(output.printable(_raw(data[key])) for key, _ in columns))
        sys.stdout.write("\n".join(lines) + "\n")
        return
    output.stdout.print(table(rows, columns, title))


def _raw(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


@app.command()
def conversions(as_json: JsonOpt = False) -> None:
    """Leads, conversions and conversion rate per source (lead_conversion_summary)."""
    with database(read_only=True) as conn:
        rows = reports.conversion_summary(conn)
    show(rows, CONVERSIONS, as_json, "conversions by source")


@app.command("client-history")
def client_history(
    client_id: Annotated[str, typer.Argument(help="The client's id (a UUID).")],
    as_json: JsonOpt = False,
) -> None:
    """The leads that converted to a client (client_lead_history); exit 4 if unknown."""
    with database(read_only=True) as conn:
        rows = reports.client_history(conn, client_id)
    title = f"leads of client {rows[0].client_name}" if rows else f"leads of client {client_id}"
    show(rows, CLIENT_HISTORY, as_json, title)
    if not rows and not as_json and output.stdout.is_terminal:
        output.say("no lead converted to this client (it was created directly)")


@app.command()
def funnel(as_json: JsonOpt = False) -> None:
    """Per status: leads that reached it, leads in it now, drop-off, median days in it."""
    with database(read_only=True) as conn:
        rows = reports.status_funnel(conn)
    show(rows, FUNNEL, as_json, "status funnel")


@sample_app.command()
def generate(
    leads: Annotated[
        int, typer.Option(min=1, max=crm.MAX_LEADS, help="How many leads to generate.")
    ] = 10_000,
    seed: Annotated[
        int, typer.Option(min=0, max=crm.MAX_SEED - 1, help="Same seed, same data.")
    ] = 1,
    now: Annotated[
        str | None,
        typer.Option(help="Where the generated history ends (ISO 8601; default: today 00:00 UTC)."),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Add to a CRM that already holds leads, clients or contacts.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate a realistic CRM into the configured database (at the newest schema).

    Leads over two years with sources, industries, sizes, budgets and a funnel
    history; contacts; clients for the conversions; and each lead's true probability
    of converting within 90 days in the table sample_truth. A CRM that already holds
    data is refused unless --force (the generated rows are then added to it).
    """
    end = moment(now, "moment for --now")
    with database() as conn:
        found = crm.existing_rows(conn)
        if found and not force:
            raise UsageError(
                f"The database already holds a CRM ({found:,} leads, clients and contacts); "
                "generated data would mix with it. Use an empty database, or add --force to "
                "add the generated rows to it."
            )
        with output.progress(not as_json) as step:
            step(f"generating {leads:,} leads")
            made = crm.generate(conn, leads=leads, seed=seed, now=end)
    if as_json:
        output.emit_json(made.to_dict())
        return
    statuses = ", ".join(f"{name} {made.statuses.get(name, 0):,}" for name in reports.STATUSES)
    output.say(
        f"generated {made.leads:,} leads (seed {made.seed}, history until "
        f"{made.now:%Y-%m-%d %H:%M} UTC) in {made.seconds:.1f} s: {made.converted:,} "
        f"converted into clients, {made.contacts:,} contacts, {made.history_rows:,} "
        f"status changes in crm_history"
    )
    output.say(f"statuses: {statuses}")
    output.say("ground truth: sample_truth (lead_id, p_convert_90d); models must not read it")
