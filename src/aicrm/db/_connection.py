"""Opening connections, describing them without secrets, and redacting secrets."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from aicrm.config import Settings, detect_pool_mode, resolve
from aicrm.db import embedded
from aicrm.errors import ConnectionFailed

Connection = psycopg.Connection[TupleRow]

CONNECT_TIMEOUT = 10  # seconds; libpq's default is to wait forever


@dataclass(frozen=True)
class Target:
    """Where a connection goes, with everything but the password.

    ``conninfo`` may hold the password and is never shown; ``describe()`` is what
    users see. ``pool_mode`` is ``session`` or ``transaction`` (a transaction-pooling
    pooler in between: no server-side prepared statements); ``read`` the read
    replica's target, if any, and ``read_max_lag`` the most it may lag (seconds).
    """

    conninfo: str
    source: str
    host: str
    port: str
    dbname: str
    user: str
    secrets: tuple[str, ...]
    pool_mode: str = "session"
    read: Target | None = None
    read_max_lag: float = 5.0

    @property
    def pooled(self) -> bool:
        """Whether a transaction-pooling pooler sits in between."""
        return self.pool_mode == "transaction"

    def connect_kwargs(self) -> dict[str, Any]:
        """What psycopg's ``connect`` (and the pools' ``kwargs``) need for this target.

        Behind a transaction pooler, psycopg must not prepare statements: a prepared
        statement lives in one server session, and the pooler hands the next
        transaction to another one ('prepared statement "_pg3_1" does not exist', or
        worse, another statement of that name). PgBouncer >= 1.22 with
        ``max_prepared_statements`` could keep them; 1.18 (Debian 12) cannot.
        """
        return {"prepare_threshold": None} if self.pooled else {}

    def for_database(self, dbname: str) -> Target:
        """The same server and login, another database."""
        return dataclasses.replace(
            self, conninfo=make_conninfo(self.conninfo, dbname=dbname), dbname=dbname
        )

    def describe(self) -> str:
        where = f"socket {self.host}" if self.host.startswith("/") else self.host
        return f"{self.user}@{where}:{self.port}/{self.dbname} ({self.source})"


def target(settings: Settings | None = None) -> Target:
    """Resolve where to connect; starts the embedded server when it is the source."""
    settings = settings or resolve()
    info = embedded.conninfo(settings.home) if settings.embedded else settings.conninfo
    params = conninfo_to_dict(info)
    env = os.environ
    host = str(params.get("host") or env.get("PGHOST") or "/var/run/postgresql")
    port = str(params.get("port") or env.get("PGPORT") or "5432")
    user = str(params.get("user") or env.get("PGUSER") or _login_name())
    dbname = str(params.get("dbname") or env.get("PGDATABASE") or user)
    source = "embedded" if settings.embedded else settings.source
    mode = detect_pool_mode(settings.pool_mode, info)
    read = _read_target(settings, mode) if settings.read_conninfo else None
    return Target(
        info, source, host, port, dbname, user, settings.secrets, mode, read, settings.read_max_lag
    )


def _read_target(settings: Settings, mode: str) -> Target:
    params = conninfo_to_dict(settings.read_conninfo)
    env = os.environ
    host = str(params.get("host") or env.get("PGHOST") or "/var/run/postgresql")
    port = str(params.get("port") or env.get("PGPORT") or "5432")
    user = str(params.get("user") or env.get("PGUSER") or _login_name())
    dbname = str(params.get("dbname") or env.get("PGDATABASE") or user)
    # the replica behind a pooler too when the primary is, or when its host says so
    read_mode = (
        "transaction"
        if mode == "transaction"
        else detect_pool_mode(settings.pool_mode, settings.read_conninfo)
    )
    return Target(
        settings.read_conninfo,
        "AICRM_READ_URL",
        host,
        port,
        dbname,
        user,
        settings.secrets,
        read_mode,
        None,
        settings.read_max_lag,
    )


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name at all (odd containers): libpq would fail too
        return "unknown"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret, and any ``password=…`` or URL password, with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.IGNORECASE)
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def connect(
    where: Target | None = None,
    *,
    autocommit: bool = False,
    application_name: str = "aicrm",
    dbname: str | None = None,
) -> Connection:
    """Open a connection to ``where`` (default: the resolved settings).

    Raises :class:`ConnectionFailed` with a one-line reason (wrong password, unknown
    host, refused connection, missing database), never showing the password.
    """
    where = where or target()
    extra: dict[str, str | int] = {"application_name": application_name}
    if "connect_timeout" not in conninfo_to_dict(where.conninfo) and not os.environ.get(
        "PGCONNECT_TIMEOUT"
    ):
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if dbname is not None:
        extra["dbname"] = dbname
    try:
        return psycopg.connect(
            make_conninfo(where.conninfo, **extra), autocommit=autocommit, **where.connect_kwargs()
        )
    except psycopg.OperationalError as exc:
        shown = where if dbname is None else where.for_database(dbname)
        raise ConnectionFailed(
            f"Could not connect to {shown.describe()}: {_reason(exc, where.secrets)}. "
            f"Check the server is running and the {_settings_of(where)} settings."
        ) from None


def _settings_of(where: Target) -> str:
    return "AICRM_READ_URL" if where.source == "AICRM_READ_URL" else "DATABASE_URL, DB_* or PG*"


def _reason(exc: psycopg.OperationalError, secrets: Iterable[str]) -> str:
    """The useful line of a libpq connection error, e.g. 'password authentication failed'."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    # libpq prefixes: 'connection failed: connection to server at "h" (1.2.3.4), port 5 failed: X'
    for line in lines:
        match = re.search(r"failed: (?!.*failed: )(.*)$", line)
        if match and match.group(1):
            reason = match.group(1)
            break
    reason = reason.removeprefix("FATAL:").strip()
    return redact(reason.rstrip("."), secrets)
