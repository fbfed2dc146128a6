"""The ``aicrm`` command: error handling at the edge, sub-commands below."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import typer

from aicrm import __version__
from aicrm.cli import (
    _activities as activities,
    _ai as ai,
    _apikey as apikey,
    _clients as clients,
    _contacts as contacts,
    _db as db,
    _demo as demo,
    _leads as leads,
    _output as output,
    _report as report,
    _serve as serve,
    _statuses as statuses,
    _transfer as transfer,
    _users as users,
    _webhooks as webhooks,
    mcp as mcp_cli,
)
from aicrm.errors import AicrmError

app = typer.Typer(
    help="aicrm: an AI-centric CRM on PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(leads.app, name="leads")
app.add_typer(clients.app, name="clients")
app.add_typer(contacts.app, name="contacts")
app.add_typer(activities.app, name="activities")
app.add_typer(users.app, name="users")
transfer.register(leads.app, contacts.app)
app.add_typer(statuses.app, name="statuses")
app.add_typer(apikey.app, name="apikey")
app.add_typer(report.app, name="report")
app.add_typer(report.sample_app, name="sample")
app.add_typer(ai.ai_app, name="ai")
app.add_typer(ai.analyze_app, name="analyze")
app.add_typer(webhooks.app, name="webhooks")
app.command()(demo.demo)
app.command()(serve.serve)
app.command(name="mcp")(mcp_cli.mcp)


def _show_version(value: bool) -> None:
    if value:
        output.say(f"aicrm {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """aicrm: an AI-centric CRM on PostgreSQL.

    Set AICRM_DEBUG=1 to see the Python traceback of an error.
    """


# Plain words for the values options take, instead of typer's type labels (<list[str]>).
METAVARS = {"str": "TEXT", "list[str]": "TEXT", "int": "N", "int range": "N",
            "float": "NUMBER", "float range": "NUMBER", "path": "PATH", "file": "FILE",
            "directory": "FOLDER", "datetime": "TIME"}  # fmt: skip


def command() -> Any:
    """The ``aicrm`` command as click runs it, with help in plain text: click's own
    layout, which rewraps docstrings to the terminal and never cuts an option's name
    (typer's Rich panels did, at 80 columns), values named in words (``--attr TEXT``),
    and no ``[default: no-…]`` after an off-by-default flag."""
    root = typer.main.get_command(app)
    _plain(root)
    return root


def _plain(cmd: Any) -> None:
    cmd.rich_markup_mode = None
    for param in cmd.params:
        kind = getattr(param, "param_type_name", "")
        if kind == "option" and param.is_flag:
            param.show_default = False
        elif kind == "option" and hasattr(param, "display_type"):
            label = param.display_type(None).strip("<>")
            word = param.metavar or METAVARS.get(label, label.upper())
            # typer shows its type label here; an instance attribute takes its place
            param.display_type_rich = lambda ctx, word=word: word
        elif kind == "argument" and hasattr(param, "display_type"):
            param.display_type_rich = lambda ctx: None  # the name says enough
    for sub in getattr(cmd, "commands", {}).values():
        _plain(sub)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    code = _dispatch(argv)
    if argv is None:
        sys.exit(code)
    return code


def _dispatch(argv: list[str] | None) -> int:
    debug = os.environ.get("AICRM_DEBUG") == "1"
    try:
        result = command().main(args=argv, prog_name="aicrm", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors: bad flag, missing argument
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            return 2  # typer has printed the help already
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        output.error(exc.format_message() + hint)
        return exc.exit_code
    except typer.Abort:
        output.error("Interrupted.")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except AicrmError as exc:
        if debug:
            traceback.print_exc()
        output.error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        output.error("Interrupted; any open transaction was rolled back.")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        output.error(
            f"Internal error: {type(exc).__name__}: {' '.join(str(exc).split())}. This is "
            "a bug in aicrm; rerun with AICRM_DEBUG=1 to see the traceback and report it."
        )
        return 1
    return result if isinstance(result, int) else 0
