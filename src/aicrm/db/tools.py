"""Finding PostgreSQL's client programs (pg_dump, psql) and their versions.

Looked up in ``AICRM_PG_BIN`` when set, then in the embedded server's own folder
(PostgreSQL 18, which dumps any older server), then on ``PATH``. A pg_dump older
than the server refuses to dump it: the usual real-world failure, so the engine
checks the major versions before it starts.
"""

from __future__ import annotations

import os
import re
import subprocess
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from aicrm.errors import PrerequisiteFailed


@dataclass(frozen=True)
class Tool:
    name: str
    path: Path
    major: int
    version: str


def search_path() -> list[Path]:
    """The folders searched for client programs, in order."""
    folders: list[Path] = []
    if os.environ.get("AICRM_PG_BIN"):
        folders.append(Path(os.environ["AICRM_PG_BIN"]))
    else:
        from aicrm.db import embedded

        with suppress(Exception):  # a broken pgserver install: fall back to PATH
            folders.append(embedded.bin_dir())
        folders.extend(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)
    return folders


def find(name: str) -> Tool:
    """Find a client program and read its version.

    Raises :class:`PrerequisiteFailed` when it is missing or does not run.
    """
    folders = search_path()
    for folder in folders:
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return _versioned(name, candidate)
    where = os.environ.get("AICRM_PG_BIN") or "the embedded server's folder or PATH"
    raise PrerequisiteFailed(
        f"The PostgreSQL client program {name} was not found in {where}. "
        "Install the PostgreSQL client tools, or set AICRM_PG_BIN to their folder."
    )


def _versioned(name: str, path: Path) -> Tool:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise PrerequisiteFailed(
            f"{path} does not run ({type(exc).__name__}); check the installation of the "
            "PostgreSQL client tools."
        ) from None
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        raise PrerequisiteFailed(f"Could not read the version of {path} from {out.strip()!r}.")
    return Tool(name, path, int(match.group(1)), match.group(0))
