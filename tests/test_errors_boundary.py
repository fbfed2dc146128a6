"""Database errors become aicrm errors at one boundary (``aicrm.db.errors.translated``).

Two checks on the source: outside ``db/`` no module catches psycopg's errors (but the
few allowed below, each with its reason), and the interfaces (cli, api, web, mcp) do
not even name them; the library's public functions pass through the boundary. Then
the behaviour: a library read that the database refuses raises an
:class:`AicrmError`, and the CLI and the MCP tools answer it in one line (the API's
problem document: tests/api/test_problems.py), the dashboard with its error page.
"""

from __future__ import annotations

import ast
import importlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import psycopg
import pytest
from fastapi.testclient import TestClient
from mcp.server.mcpserver.exceptions import ToolError
from psycopg import sql
from psycopg.conninfo import make_conninfo

from aicrm import apikeys
from aicrm.crm import clients, leads, store
from aicrm.db import errors as db_errors
from aicrm.errors import AicrmError, Conflict, InvalidInput, NotFound, PrerequisiteFailed, Stale
from aicrm.mcp._backend import Backend
from aicrm.mcp._server import build_server
from aicrm.server import create_app
from tests.conftest import Database
from tests.web.conftest import sign_in
from tests.web.seed import seed

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "aicrm"
INTERFACES = ("cli", "api", "web", "mcp")

# The modules outside db/ that may catch psycopg's errors themselves, and why.
# This list may only shrink: an entry whose module no longer catches one fails.
ALLOWED = {
    "config.py": "conninfo_to_dict's ProgrammingError: a malformed connection string, "
    "parsed before any database is involved (config sits below db/)",
    "migrate/_lock.py": "the lock retries: LockNotAvailable and DeadlockDetected are "
    "retried, a failed rollback of a broken connection is ignored, and a missing "
    "privilege on pg_stat_activity only shortens the report of lock holders",
    "migrate/_checks.py": "the parallel integrity checks cancel their own helper "
    "connections when one fails: the helpers' QueryCanceled is expected, not the run's",
}


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted psycopg name, from the module's imports."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "psycopg":
                    found[(alias.asname or alias.name).split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "psycopg":
            for alias in node.names:
                found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return found


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _psycopg_error(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """The psycopg error class ``node`` names, if it names one."""
    name = _dotted(node)
    if name is None:
        return None
    head, _, rest = name.partition(".")
    if head not in aliases:
        return None
    full = aliases[head] + (f".{rest}" if rest else "")
    module_name, _, attr = full.rpartition(".")
    if not module_name:
        return None  # the module itself
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None
    return full if isinstance(found, type) and issubclass(found, psycopg.Error) else None


def _caught(node: ast.AST, aliases: dict[str, str]) -> list[str]:
    """The psycopg errors an ``except`` clause or a ``suppress(...)`` call catches."""
    if isinstance(node, ast.ExceptHandler) and node.type is not None:
        parts = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (_dotted(node.func) or "").split(".")[-1] == "suppress"
    ):
        parts = list(node.args)
    else:
        return []
    return [name for part in parts if (name := _psycopg_error(part, aliases))]


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def test_only_db_and_the_allowed_places_catch_psycopg_errors() -> None:
    catching: dict[str, list[str]] = {}
    for name, tree in _modules():
        if name.startswith("db/"):
            continue
        aliases = _aliases(tree)
        for node in ast.walk(tree):
            for error in _caught(node, aliases):
                catching.setdefault(name, []).append(f"line {getattr(node, 'lineno', 0)}: {error}")
    unexpected = {name: where for name, where in catching.items() if name not in ALLOWED}
    assert not unexpected, (
        "Only db/ translates database errors; use aicrm.db.errors.translated (with "
        f"`into` for your own wording) instead of catching them: {unexpected}"
    )
    stale = sorted(set(ALLOWED) - set(catching))
    assert not stale, f"No longer catching psycopg errors: remove from ALLOWED: {stale}"


def test_the_interfaces_never_name_a_psycopg_error() -> None:
    named: dict[str, list[str]] = {}
    for name, tree in _modules():
        if name.split("/")[0] not in INTERFACES:
            continue
        aliases = _aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute | ast.Name) and (
                error := _psycopg_error(node, aliases)
            ):
                named.setdefault(name, []).append(f"line {node.lineno}: {error}")
    assert not named, f"Interfaces catch AicrmError only; they name psycopg errors: {named}"


def test_the_library_public_calls_pass_through_the_boundary() -> None:
    """Every public function of crm/, ai/, events/ and apikeys that takes a connection
    is wrapped in ``@translated()`` (``session.transaction`` is the boundary itself). A
    generator is left out: its errors surface while its caller iterates it, inside the
    caller's boundary, not during the call a decorator would wrap."""
    bare = []
    for name, tree in _modules():
        if name == "crm/session.py" or not (
            name.startswith(("crm/", "ai/", "events/")) or name == "apikeys.py"
        ):
            continue
        for node in tree.body:
            if (
                isinstance(node, ast.FunctionDef)
                and not node.name.startswith("_")
                and node.args.args
                and node.args.args[0].arg == "conn"
                and "translated()" not in [ast.unparse(d) for d in node.decorator_list]
                and not any(isinstance(n, ast.Yield | ast.YieldFrom) for n in ast.walk(node))
            ):
                bare.append(f"{name}: {node.name}")
    assert not bare, f"public library calls without @translated(): {bare}"


# --- the boundary itself


def test_translated_words_errors_and_chains_the_cause(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with pytest.raises(AicrmError) as caught, db_errors.translated():
            conn.execute("SELECT * FROM no_such_table")
        assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedTable)
        assert caught.value.message == (
            'The database reported an error: relation "no_such_table" does not exist.'
        )
        conn.rollback()

        def own(exc: psycopg.Error) -> AicrmError | None:
            return InvalidInput("ours") if isinstance(exc, psycopg.DataError) else None

        with pytest.raises(InvalidInput, match=r"^ours$"), db_errors.translated(own):
            conn.execute("SELECT 'x'::int")
        conn.rollback()
        with pytest.raises(AicrmError, match="does not exist"), db_errors.translated(own):
            conn.execute("SELECT * FROM no_such_table")


def test_each_error_class_has_its_status_in_one_map() -> None:
    """The API and the dashboard answer with the class's own ``http_status``."""
    assert (Stale.http_status, Stale.exit_code, Stale.problem) == (412, 5, "stale-update")
    assert issubclass(Stale, Conflict) and store.Stale is Stale
    assert (Conflict.http_status, NotFound.http_status, InvalidInput.http_status) == (409, 404, 422)
    assert (AicrmError.http_status, PrerequisiteFailed.http_status) == (500, 500)
    too_large = psycopg.errors.ProgramLimitExceeded("index row size 2720 exceeds maximum 2704")
    translated = db_errors.translate(too_large)
    assert isinstance(translated, InvalidInput) and translated.http_status == 422
    assert translated.message == (
        "A value is too large for the database: index row size 2720 exceeds maximum 2704."
    )


def test_primary_message_is_the_servers_or_the_first_line(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("INSERT INTO leads (id) VALUES (NULL)")
        error = caught.value
    assert db_errors.primary_message(error) == error.diag.message_primary
    detail = db_errors.primary_message(error, detail=True)
    assert detail.startswith(f"{error.diag.message_primary} (") and detail.endswith(")")
    assert db_errors.primary_message(psycopg.OperationalError("one\ntwo")) == "one"
    assert db_errors.primary_message(psycopg.OperationalError()) == "OperationalError"


# --- the behaviour: a read the database refuses


@pytest.fixture
def stranger(crm_db: Database) -> Iterator[str]:
    """The URL of a login role without any privilege on the CRM's tables."""
    role = f"aicrm_stranger_{uuid.uuid4().hex[:8]}"
    crm_db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield make_conninfo(crm_db.url, user=role)
    finally:
        crm_db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(crm_db.server.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_library_read_the_database_refuses_raises_an_aicrm_error(
    crm_db: Database, stranger: str
) -> None:
    with psycopg.connect(stranger) as conn:  # any connection: the library translates
        with pytest.raises(PrerequisiteFailed) as refused:
            leads.list_leads(conn)
        assert isinstance(refused.value.__cause__, psycopg.errors.InsufficientPrivilege)
        assert "permission denied for table leads" in refused.value.message
    crm_db.execute("ALTER TABLE clients RENAME TO clients_gone")
    with crm_db.connect() as conn, pytest.raises(AicrmError) as missing:
        clients.list_clients(conn)
    assert 'relation "clients" does not exist' in missing.value.message


@pytest.mark.slow
def test_the_cli_answers_a_refused_read_in_one_line(crm_db: Database, stranger: str) -> None:
    done = crm_db.cli("leads", "list", env={"DATABASE_URL": stranger})
    assert done.returncode == 2, done.stderr  # PrerequisiteFailed
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "permission denied for table" in lines[0], done.stderr
    assert lines[0].startswith("error: The database refused:"), done.stderr
    crm_db.execute("ALTER TABLE clients RENAME TO clients_gone")
    done = crm_db.cli("clients", "list")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        'error: The database reported an error: relation "clients" does not exist.'
    ), done.stderr


def test_an_mcp_tool_answers_a_refused_read_in_one_line(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        _, token = apikeys.create_key(conn, "boundary", "read")
        conn.commit()
    crm_db.execute("ALTER TABLE clients RENAME TO clients_gone")
    backend = Backend(crm_db.target(), token)
    server = build_server(backend)

    async def call() -> None:
        await server.call_tool("search_clients", {})

    try:
        with pytest.raises(ToolError) as refused:
            anyio.run(call)
    finally:
        backend.close()
    message = str(refused.value)
    assert 'relation "clients" does not exist' in message and "\n" not in message
    assert "Internal error" not in message


def test_a_dashboard_page_answers_a_refused_read_with_its_message(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        crm = seed(conn)
    crm_db.execute("ALTER TABLE clients RENAME TO clients_gone")
    with TestClient(create_app(crm_db.target(), pool_size=2), follow_redirects=False) as client:
        sign_in(client, crm.read_token)
        answer = client.get("/clients")
    assert answer.status_code == 500, answer.text
    assert "relation &#34;clients&#34; does not exist" in answer.text, answer.text
    assert "Traceback" not in answer.text
