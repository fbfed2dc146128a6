"""The command line: help for every command, version, and the seed's wrapper script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import aicrm
import aicrm.crm
import aicrm.migrate
from aicrm.cli.main import app, run
from tests.conftest import REPO, Database, host_port_user
from tests.support import migration_count


def _commands(group: typer.Typer, prefix: str = ""):
    command = typer.main.get_command(group)
    stack = [(prefix, command)]
    while stack:
        path, cmd = stack.pop()
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append((f"{path} {name}".strip(), sub))


def test_every_command_has_help_text() -> None:
    for path, command in _commands(app):
        assert (command.help or "").strip(), f"'aicrm {path}' has no help text"
        for param in command.params:
            if getattr(param, "hidden", False) or param.name in ("help",):
                continue
            if param.param_type_name == "option":
                assert getattr(param, "help", None), f"option {param.name} of '{path}' lacks help"


def test_version_and_help_exit_cleanly(capsys) -> None:
    assert run(["--version"]) == 0
    assert aicrm.__version__ in capsys.readouterr().out
    assert run(["db", "--help"]) == 0
    assert "migrate" in capsys.readouterr().out


def test_public_names_are_exported() -> None:
    for module in (aicrm, aicrm.migrate, aicrm.crm):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_repository_migrations_folder_mirrors_the_packaged_files() -> None:
    packaged = sorted(p.name for p in (REPO / "src/aicrm/migrations").glob("*.sql"))
    linked = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    assert linked == packaged
    for name in linked:
        assert (REPO / "migrations" / name).read_bytes() == (
            REPO / "src/aicrm/migrations" / name
        ).read_bytes()


@pytest.mark.slow
def test_seed_wrapper_script_runs_a_dry_run_and_a_migration(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(REPO / "migrations" / "run_migration.sh", folder)
    host, port, user = host_port_user(db.url)
    env = {**db.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("BACKUP_DIR")
    env.pop("DATABASE_URL")  # the seed's variables, and nothing else, name the database
    env.update(DB_HOST=host, DB_PORT=port, DB_USER=user, DB_NAME=db.name)

    dry = subprocess.run(
        ["./run_migration.sh", "--dry-run"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and f"/{db.name} (DB_*)" in dry.stdout
    assert db.scalar("SELECT to_regclass('aicrm_schema_migrations') IS NULL") is True
    assert not (folder / "backups").exists()

    real = subprocess.run(
        ["./run_migration.sh"], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    assert real.returncode == 0, real.stderr
    assert list((folder / "backups").glob("backup_before_migration_*.sql"))
    assert db.scalar("SELECT count(*) FROM aicrm_schema_migrations") == migration_count()
