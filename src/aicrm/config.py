"""Where the database is, and where aicrm keeps its own files.

Connection settings are looked up in this order; the first source found wins:

1. ``DATABASE_URL`` (a ``postgresql://`` URL or a libpq ``key=value`` string);
2. the seed's ``DB_HOST``, ``DB_PORT``, ``DB_USER``, ``DB_NAME``, ``DB_PASSWORD``
   (``DB_HOST`` may be a Unix-socket directory, as in libpq);
3. libpq's own ``PG*`` variables (``PGHOST``, ``PGSERVICE``, …), with ``~/.pgpass``;
4. none of these: an embedded PostgreSQL kept under ``AICRM_HOME``, started on demand.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aicrm.errors import UsageError

DB_VARIABLES = ("DB_HOST", "DB_PORT", "DB_USER", "DB_NAME", "DB_PASSWORD")
# The libpq variables that name a server or a login; PGPASSFILE alone names neither.
PG_VARIABLES = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGSERVICE",
    "PGPASSWORD",
)


@dataclass(frozen=True)
class Settings:
    """Resolved settings. ``conninfo`` may hold a password: never print it.

    ``source`` says which of the four sources won: ``DATABASE_URL``, ``DB_*``,
    ``PG*`` or ``embedded`` (then ``conninfo`` is empty until the server starts).
    """

    source: str
    conninfo: str
    home: Path
    secrets: tuple[str, ...] = ()

    @property
    def embedded(self) -> bool:
        return self.source == "embedded"


def aicrm_home(env: Mapping[str, str] | None = None) -> Path:
    """The folder for aicrm's own files (the embedded server's data): ``AICRM_HOME``
    or the per-user data directory."""
    env = os.environ if env is None else env
    if env.get("AICRM_HOME"):
        return Path(env["AICRM_HOME"]).expanduser().resolve()
    return platformdirs.user_data_path("aicrm")


def backup_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where backups go: ``BACKUP_DIR``, else ``backups/`` under the current directory."""
    env = os.environ if env is None else env
    return Path(env.get("BACKUP_DIR") or "backups").expanduser().resolve()


def resolve(env: Mapping[str, str] | None = None) -> Settings:
    """Find the connection settings, first source found wins (see the module docstring).

    Raises :class:`UsageError` when ``DATABASE_URL`` cannot be parsed; the message
    does not repeat the URL, since it may hold a password.
    """
    env = os.environ if env is None else env
    home = aicrm_home(env)
    url = env.get("DATABASE_URL", "").strip()
    if url:
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise UsageError(
                "DATABASE_URL is not a valid connection string. Use the form "
                "postgresql://USER@HOST:PORT/DBNAME (the value is not shown, as it may "
                "hold a password)."
            ) from None
        return Settings("DATABASE_URL", url, home, _secrets(params.get("password"), env))
    if any(env.get(name) for name in DB_VARIABLES):
        params = {
            "host": env.get("DB_HOST") or None,
            "port": env.get("DB_PORT") or None,
            "user": env.get("DB_USER") or None,
            "dbname": env.get("DB_NAME") or None,
            "password": env.get("DB_PASSWORD") or None,
        }
        given = {key: value for key, value in params.items() if value is not None}
        return Settings(
            "DB_*", make_conninfo("", **given), home, _secrets(given.get("password"), env)
        )
    if any(env.get(name) for name in PG_VARIABLES):
        return Settings("PG*", "", home, _secrets(None, env))
    return Settings("embedded", "", home)


def _secrets(password: object, env: Mapping[str, str]) -> tuple[str, ...]:
    # libpq also reads PGPASSWORD when the chosen source names no password.
    found = [password, env.get("PGPASSWORD")]
    return tuple(p for p in found if isinstance(p, str) and p)
