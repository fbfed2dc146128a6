"""``aicrm leads import|export`` and ``aicrm contacts import|export``: CSV in and out.

The commands are registered on the leads and contacts apps by :func:`register`
(``transfer.register(leads.app, contacts.app)`` in :mod:`aicrm.cli.main`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from aicrm.cli import _output as output
from aicrm.cli._common import AttrOpt, JsonOpt, SearchOpt, actor, attributes, database, moment
from aicrm.crm import exporter, ids, importer
from aicrm.crm.importer import ImportResult
from aicrm.crm.records import STATUSES, Contact, Lead, Record
from aicrm.crm.store import Query
from aicrm.errors import InvalidInput

InFile = Annotated[
    Path, typer.Argument(help="The CSV file (UTF-8, comma-separated, a header line first).")
]
OutFile = Annotated[str, typer.Argument(help="The CSV file to write, or - for stdout.")]
SkipOpt = Annotated[
    bool,
    typer.Option(
        "--skip-invalid",
        help="Import the valid rows and write the others to --rejects (default: all or none).",
    ),
]
RejectsOpt = Annotated[
    Path | None,
    typer.Option("--rejects", help="With --skip-invalid: where the rejected rows go (CSV)."),
]
AllowDupsOpt = Annotated[
    bool,
    typer.Option(
        "--allow-duplicates", help="Accept emails that other leads or contacts (or rows) have."
    ),
]
RawOpt = Annotated[
    bool,
    typer.Option(
        "--raw",
        help="Write values exactly. By default a value a spreadsheet would run as a formula "
        "(starting with =, +, -, @, |, %, tab or CR) gets a leading '.",
    ),
]
FromOpt = Annotated[str | None, typer.Option(help="Created at or after (ISO).")]
ToOpt = Annotated[str | None, typer.Option(help="Created before (ISO).")]


def register(leads_app: typer.Typer, contacts_app: typer.Typer) -> None:
    """Add ``import`` and ``export`` to the leads and contacts commands."""
    leads_app.command("import")(import_leads)
    leads_app.command("export")(export_leads)
    contacts_app.command("import")(import_contacts)
    contacts_app.command("export")(export_contacts)


def import_leads(
    file: InFile,
    skip_invalid: SkipOpt = False,
    rejects: RejectsOpt = None,
    allow_duplicates: AllowDupsOpt = False,
    historical: Annotated[
        bool,
        typer.Option(
            "--historical",
            help="Past leads with their history: created_at, contacted_at, qualified_at, "
            "status_at, conversion_date (+ converted_to_client_id or client_name); the "
            "history is written as it happened (docs/historical-import.md).",
        ),
    ] = False,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help="A JSON file mapping another CRM's export columns and values onto aicrm's "
            "(docs/import-mappings/: Salesforce, HubSpot).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import leads from CSV; all or nothing unless --skip-invalid (invalid input: exit 2).

    Columns (any order, a header line first): first_name, last_name, email,
    company_name, source, status, ai_score, ai_summary, ai_annotations, attributes
    (JSON objects), id, created_at, updated_at — and the conversion columns of an
    export, which must be empty. Each row needs an email, a name or a company.
    """
    spec = importer.LEADS_HISTORY if historical else importer.LEADS
    _import(spec, file, skip_invalid, rejects, allow_duplicates, as_json, mapping)


def import_contacts(
    file: InFile,
    skip_invalid: SkipOpt = False,
    rejects: RejectsOpt = None,
    allow_duplicates: AllowDupsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import contacts from CSV; all or nothing unless --skip-invalid (invalid input: exit 2).

    Columns: lead_id or client_id (exactly one per row, of an existing lead or
    client), first_name, last_name, email, title, ai_annotations, attributes, id,
    created_at, updated_at. Each row needs an email or a name.
    """
    _import(importer.CONTACTS, file, skip_invalid, rejects, allow_duplicates, as_json)


def export_leads(
    file: OutFile,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    converted: Annotated[
        bool | None, typer.Option("--converted/--open", help="Only converted, or only open.")
    ] = None,
    created_from: FromOpt = None,
    created_to: ToOpt = None,
    attr: AttrOpt = None,
    search: SearchOpt = None,
    raw: RawOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export leads to CSV (all, or those the filters of 'leads list' match), oldest first."""
    query = _query(created_from, created_to, attr, search)
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(
                f"'{status}' is not a lead status; use one of {', '.join(STATUSES)}."
            )
        query.where["status"] = status
    if source is not None:
        query.where["source"] = source
    if converted is not None:
        query.where["is_converted"] = converted
    _export(Lead, file, query, as_json, raw)


def export_contacts(
    file: OutFile,
    lead: Annotated[str | None, typer.Option("--lead", help="Only this lead's contacts.")] = None,
    client: Annotated[
        str | None, typer.Option("--client", help="Only this client's contacts.")
    ] = None,
    created_from: FromOpt = None,
    created_to: ToOpt = None,
    attr: AttrOpt = None,
    search: SearchOpt = None,
    raw: RawOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export contacts to CSV (all, or those the filters match), oldest first."""
    query = _query(created_from, created_to, attr, search)
    if lead is not None:
        query.where["lead_id"] = ids.parse(lead, "lead id")
    if client is not None:
        query.where["client_id"] = ids.parse(client, "client id")
    _export(Contact, file, query, as_json, raw)


# --- shared ---------------------------------------------------------------------


def _import(
    spec: importer.Spec,
    file: Path,
    skip_invalid: bool,
    rejects: Path | None,
    allow_duplicates: bool,
    as_json: bool,
    mapping: Path | None = None,
) -> None:
    if skip_invalid and rejects is None:
        raise InvalidInput("--skip-invalid needs --rejects FILE, where the rejected rows go.")
    if rejects is not None and not skip_invalid:
        raise InvalidInput("--rejects goes with --skip-invalid.")
    with database() as conn, _bar(not as_json, f"reading {file.name}") as (progress, stage):
        result = importer.import_csv(
            conn,
            spec,
            file,
            skip_invalid=skip_invalid,
            rejects_path=rejects,
            allow_duplicates=allow_duplicates,
            actor=actor(),
            progress=progress,
            stage=stage,
            mapping=mapping,
        )
    _show_import(result, as_json)


def _show_import(result: ImportResult, as_json: bool) -> None:
    if as_json:
        output.emit_json(result.to_dict())
        return
    noun = result.table if result.imported != 1 else result.table[:-1]
    text = f"imported {result.imported:,} {noun}"
    if result.rejected:
        text += f"; rejected {result.rejected:,} row(s)"
        if result.rejects_path is not None:
            text += f", written to {result.rejects_path}"
    output.say(text)
    for error in result.errors[:5]:
        output.say(f"  line {error.line}: {error.reason}")
    if result.rejected > 5:
        output.say(f"  … and {result.rejected - 5:,} more")


def _query(
    created_from: str | None, created_to: str | None, attr: list[str] | None, search: str | None
) -> Query:
    return Query(
        attributes=attributes(attr),
        search=search,
        created_from=moment(created_from, "time for --created-from"),
        created_to=moment(created_to, "time for --created-to"),
    )


def _export(cls: type[Record], file: str, query: Query, as_json: bool, raw: bool) -> None:
    to_stdout = file == "-"
    if to_stdout and as_json:
        raise InvalidInput("--json prints a summary on stdout: export to a file to use it.")
    with database(read_only=True) as conn:
        if to_stdout:
            rows = exporter.export_csv(conn, cls, sys.stdout.buffer, query, raw=raw)
            sys.stdout.buffer.flush()
        else:
            with _spinner(not as_json, f"exporting {cls.TABLE}") as written:
                rows = exporter.export_to_path(conn, cls, file, query, progress=written, raw=raw)
    if as_json:
        output.emit_json({"table": cls.TABLE, "exported": rows, "path": file})
    elif to_stdout:
        if output.stderr.is_terminal:
            output.stderr.print(f"exported {rows:,} {cls.TABLE}", markup=False)
    else:
        output.say(f"exported {rows:,} {cls.TABLE} to {file}")


@contextmanager
def _bar(
    enabled: bool, description: str
) -> Iterator[tuple[importer.Progress | None, importer.Stage | None]]:
    """A progress bar of the upload on stderr (bytes, speed, time left), then the
    later steps' names; nothing when stderr is not a terminal."""
    if not (enabled and output.stderr.is_terminal):
        yield None, None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=output.stderr, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def stage(text: str) -> None:
            bar.update(task, description=text, total=None)

        yield progress, stage


@contextmanager
def _spinner(enabled: bool, description: str) -> Iterator[Callable[[int], None] | None]:
    if not (enabled and output.stderr.is_terminal):
        yield None
        return
    with output.stderr.status(description) as status:

        def written(done: int) -> None:
            status.update(f"{description}: {done / 1e6:,.1f} MB written")

        yield written
