"""Where the database is, and where aicrm keeps its own files.

Connection settings are looked up in this order; the first source found wins:

1. ``DATABASE_URL`` (a ``postgresql://`` URL or a libpq ``key=value`` string);
2. the seed's ``DB_HOST``, ``DB_PORT``, ``DB_USER``, ``DB_NAME``, ``DB_PASSWORD``
   (``DB_HOST`` may be a Unix-socket directory, as in libpq);
3. libpq's own ``PG*`` variables (``PGHOST``, ``PGSERVICE``, …), with ``~/.pgpass``;
4. none of these: an embedded PostgreSQL kept under ``AICRM_HOME``, started on demand.

Scaling out (docs/deployment.md):

* ``AICRM_POOL_MODE``: ``transaction`` when a transaction-pooling pooler (PgBouncer,
  RDS Proxy, Supavisor) sits between aicrm and PostgreSQL: no server-side prepared
  statements then. ``session`` when none does. ``auto`` (the default) is ``session``
  except for the poolers recognised by their host name (:func:`detect_pool_mode`);
* ``AICRM_READ_URL``: a read replica for read-only work (lists, search, export,
  reports, analysis, the dashboard); ``AICRM_READ_MAX_LAG``: the most it may lag, in
  seconds (default 5), before reads go to the primary.
"""

from __future__ import annotations

import dataclasses
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


POOL_MODES = ("auto", "session", "transaction")
DEFAULT_READ_MAX_LAG = 5.0  # seconds
# Host names of poolers that only pool by transaction, with the port that does so
# (None: any port). Supabase's pooler pools by session on 5432, by transaction on 6543.
TRANSACTION_POOLERS = ((".pooler.supabase.com", "6543"), (".rds.amazonaws.com", None))


@dataclass(frozen=True)
class Settings:
    """Resolved settings. ``conninfo`` may hold a password: never print it.

    ``source`` says which of the four sources won: ``DATABASE_URL``, ``DB_*``,
    ``PG*`` or ``embedded`` (then ``conninfo`` is empty until the server starts).
    ``pool_mode`` is ``auto``, ``session`` or ``transaction`` (``AICRM_POOL_MODE``);
    ``read_conninfo`` the replica (``AICRM_READ_URL``, may hold a password), empty
    when there is none; ``read_max_lag`` its bound in seconds.
    """

    source: str
    conninfo: str
    home: Path
    secrets: tuple[str, ...] = ()
    pool_mode: str = "auto"
    read_conninfo: str = ""
    read_max_lag: float = DEFAULT_READ_MAX_LAG

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

    Raises :class:`UsageError` when ``DATABASE_URL`` or ``AICRM_READ_URL`` cannot be
    parsed (the message does not repeat the URL, since it may hold a password), or
    when ``AICRM_POOL_MODE`` or ``AICRM_READ_MAX_LAG`` is not a valid value.
    """
    env = os.environ if env is None else env
    found = _primary(env)
    read, read_secrets = _read_url(env)
    return dataclasses.replace(
        found,
        secrets=tuple(dict.fromkeys((*found.secrets, *read_secrets))),
        pool_mode=_pool_mode(env),
        read_conninfo=read,
        read_max_lag=_max_lag(env),
    )


def _pool_mode(env: Mapping[str, str]) -> str:
    mode = env.get("AICRM_POOL_MODE", "").strip().lower() or "auto"
    if mode not in POOL_MODES:
        raise UsageError(
            f"AICRM_POOL_MODE must be one of {', '.join(POOL_MODES)}, not {mode!r}: "
            "'transaction' behind PgBouncer (pool_mode = transaction), RDS Proxy or "
            "Supavisor, 'session' otherwise."
        )
    return mode


def _read_url(env: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    url = env.get("AICRM_READ_URL", "").strip()
    if not url:
        return "", ()
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise UsageError(
            "AICRM_READ_URL is not a valid connection string. Use the form "
            "postgresql://USER@HOST:PORT/DBNAME of the read replica (the value is not "
            "shown, as it may hold a password), or unset it to read from the primary."
        ) from None
    password = params.get("password")
    return url, (password,) if isinstance(password, str) and password else ()


def _max_lag(env: Mapping[str, str]) -> float:
    text = env.get("AICRM_READ_MAX_LAG", "").strip()
    if not text:
        return DEFAULT_READ_MAX_LAG
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise UsageError(
            f"AICRM_READ_MAX_LAG must be a number of seconds, 0 or more (such as 5), not {text!r}."
        )
    return value


def detect_pool_mode(mode: str, conninfo: str) -> str:
    """``session`` or ``transaction``: ``mode`` itself unless it is ``auto``; then
    ``transaction`` for the poolers of :data:`TRANSACTION_POOLERS` (recognised by host
    name and port, which is reliable), else ``session``. A PgBouncer of your own
    cannot be told from PostgreSQL by a client: set ``AICRM_POOL_MODE=transaction``.
    """
    if mode != "auto":
        return mode
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "session"
    hosts = str(params.get("host") or "").lower().split(",")
    port = str(params.get("port") or "5432")
    for suffix, pooled_port in TRANSACTION_POOLERS:
        for host in hosts:
            if host.endswith(suffix) and (pooled_port is None or port == pooled_port):
                if suffix == ".rds.amazonaws.com" and ".proxy-" not in host:
                    continue  # an RDS instance itself, not RDS Proxy
                return "transaction"
    return "session"


def _primary(env: Mapping[str, str]) -> Settings:
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
