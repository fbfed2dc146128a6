"""Verified backups with pg_dump, and restoring them into an empty database.

A backup is a plain-SQL dump of the whole database (schema and data), so the
seed's rollback command works as written::

    psql -h $DB_HOST -p $DB_PORT -U $DB_USER -d $DB_NAME < backup_before_migration_….sql

The file is created with mode 0600 before pg_dump writes a byte, as ``NAME.sql.partial``,
and written by a thread that flushes it as it goes (:mod:`aicrm.migrate._sink`);
it is only accepted, and renamed to ``NAME.sql``, when pg_dump exits 0 and the file
ends with pg_dump's end-of-dump marker. :func:`start` returns while pg_dump runs (the
runner does its read-only integrity checks meanwhile); :meth:`Running.discard` stops
it and deletes what it wrote.
The password reaches pg_dump and psql through ``PGPASSWORD`` in their environment,
never on a command line or in a file name.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aicrm.db import Target, connect, redact, tools
from aicrm.errors import BackupFailed, UsageError
from aicrm.migrate._sink import Sink

END_MARKER = b"-- PostgreSQL database dump complete"
UNKNOWN_BEFORE_17 = {b"SET transaction_timeout = 0;"}
PREFIX = "backup_before_migration_"

NON_EMPTY = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND n.nspname NOT LIKE 'pg_temp%' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
"""


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    seconds: float


def client_env(where: Target) -> tuple[str, dict[str, str]]:
    """A conninfo without the password for a client program's command line, and the
    environment that carries the password."""
    params = conninfo_to_dict(where.conninfo)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def take(where: Target, folder: Path) -> Backup:
    """Dump the whole database to a new ``backup_before_migration_*.sql`` in ``folder``.

    Raises :class:`BackupFailed` when pg_dump fails or the dump is incomplete; the
    partial file is removed, so a backup file that exists is a complete one.
    """
    return start(where, folder).wait()


class Running:
    """A pg_dump under way (see :func:`start`): :meth:`wait` for the verified backup,
    or :meth:`discard` it. Until :meth:`wait` has verified it, the dump is written to
    ``NAME.sql.partial``; only a complete, verified dump is renamed to ``NAME.sql``."""

    def __init__(self, where: Target, path: Path, partial: Path) -> None:
        self.where = where
        self.path = path
        self.partial = partial
        self.started = time.monotonic()
        self._messages = tempfile.TemporaryFile()  # noqa: SIM115 (closed by wait or discard)
        self._proc: subprocess.Popen[bytes] | None = None
        self._sink: Sink | None = None
        self._done: Backup | None = None

    def _launch(self, pg_dump: Path) -> None:
        conninfo, env = client_env(self.where)
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # pg_dump writes into a pipe that a thread copies into the file, flushing
            # as it goes (_sink: a dump flushed in one burst stalls the application's
            # commits); its messages go to a temporary file (a pipe nobody reads
            # while it runs could fill up and stall it).
            self._proc = subprocess.Popen(
                [str(pg_dump), "--no-password", "--dbname", conninfo],
                stdout=subprocess.PIPE,
                stderr=self._messages,
                env=env,
            )
        except BaseException:
            os.close(fd)
            self.partial.unlink(missing_ok=True)
            self._messages.close()
            raise
        assert self._proc.stdout is not None
        self._sink = Sink(self._proc.stdout, fd)

    def failed(self) -> bool:
        """True once pg_dump has exited with an error, or writing its output has
        failed (without waiting for either)."""
        if self._sink is not None and self._sink.error is not None:
            return True
        return self._proc is not None and self._proc.poll() not in (None, 0)

    def wait(self) -> Backup:
        """Wait for pg_dump, verify the dump and return it.

        Raises :class:`BackupFailed` (the partial file removed) when pg_dump failed or
        the dump lacks the end-of-dump marker."""
        if self._done is not None:
            return self._done
        assert self._proc is not None
        try:
            returncode = self._proc.wait()
            assert self._sink is not None
            self._sink.join()
            if self._sink.error is not None:
                error = self._sink.error
                raise BackupFailed(
                    f"Could not write the backup {self.path.name}: "
                    f"{error.strerror or error}. Nothing was changed; free space in "
                    f"{self.path.parent} or set BACKUP_DIR to a folder with room."
                )
            if returncode != 0:
                self._messages.seek(0)
                text = self._messages.read().decode("utf-8", "replace")
                reason = _first_line(text, self.where.secrets)
                raise BackupFailed(
                    f"pg_dump failed (exit {returncode}): {reason}. Nothing was changed."
                )
            if not is_complete(self.partial):
                raise BackupFailed(
                    f"pg_dump exited 0 but {self.path.name} lacks the end-of-dump marker; the "
                    "backup is incomplete (disk full?). Nothing was changed."
                )
            os.rename(self.partial, self.path)
            _fsync_dir(self.path.parent)
        except BaseException:
            self.discard()
            raise
        finally:
            self._messages.close()
        self._done = Backup(self.path, self.path.stat().st_size, time.monotonic() - self.started)
        return self._done

    def discard(self) -> None:
        """Stop pg_dump if it still runs and delete what it wrote, complete or not: a
        backup the run does not go on with must not be left behind as if it were one."""
        if self._proc is not None and self._proc.poll() is None:
            # SIGTERM first: pg_dump then cancels its query on the server (a backend
            # waiting for a lock would otherwise stay until it got it), and exits.
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._proc is not None:
            self._proc.wait()
        if self._sink is not None:
            self._sink.join()
        self._messages.close()
        self.partial.unlink(missing_ok=True)
        if self._done is not None:
            self.path.unlink(missing_ok=True)
            self._done = None


def start(where: Target, folder: Path) -> Running:
    """Start pg_dump of the whole database into a new ``backup_before_migration_*.sql``
    in ``folder`` and return at once; pg_dump is a process of its own, so the caller
    can go on with read-only work (the integrity checks) while it runs."""
    pg_dump = tools.find("pg_dump")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        path = folder / f"{PREFIX}{stamp}.sql"
        counter = 1
        while path.exists() or _partial(path).exists():
            counter += 1
            path = folder / f"{PREFIX}{stamp}_{counter}.sql"
        running = Running(where, path, _partial(path))
        running._launch(pg_dump.path)
    except OSError as exc:
        raise BackupFailed(
            f"Could not write a backup in {folder}: {exc.strerror or exc}. Nothing was "
            "changed; set BACKUP_DIR to a folder you can write to."
        ) from None
    return running


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every file system lets a directory be fsynced
    finally:
        os.close(fd)


def is_complete(path: Path) -> bool:
    """True when the dump ends with pg_dump's end-of-dump marker."""
    with path.open("rb") as dump:
        dump.seek(max(0, path.stat().st_size - 4096))
        return END_MARKER in dump.read()


def restore(where: Target, path: Path, into: str) -> None:
    """Restore a backup file into database ``into`` on the same server.

    Creates ``into`` when it does not exist; refuses (:class:`UsageError`) a target
    that holds any table, view or sequence. Runs psql in a single transaction with
    ON_ERROR_STOP, so a failed restore leaves nothing behind (a database it created
    is dropped again).
    """
    if not path.is_file():
        raise UsageError(f"Backup file {path} does not exist.")
    if not is_complete(path):
        raise UsageError(
            f"{path.name} does not end with pg_dump's end-of-dump marker: it is not a "
            "complete aicrm backup, so it was not restored."
        )
    psql = tools.find("psql")
    created, server_major = _prepare_target(where, into)
    conninfo, env = client_env(where)
    # pg_dump 17+ writes "SET transaction_timeout = 0;", a setting older servers do not
    # know; with ON_ERROR_STOP that one line would abort the restore.
    skip = UNKNOWN_BEFORE_17 if server_major < 17 else set()
    # psql's messages go to a file, not a pipe: a pipe nobody reads while we feed
    # psql could fill up and stall both processes.
    with (
        tempfile.TemporaryFile() as messages,
        subprocess.Popen(
            [
                str(psql.path),
                "--no-psqlrc",
                "--no-password",
                "--quiet",
                "--single-transaction",
                "--set",
                "ON_ERROR_STOP=1",
                "--file",
                "-",
                "--dbname",
                make_conninfo(conninfo, dbname=into),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=messages,
            env=env,
        ) as proc,
    ):
        assert proc.stdin is not None
        try:
            with path.open("rb") as dump:
                for line in dump:
                    if line.strip() not in skip:
                        proc.stdin.write(line)
        except BrokenPipeError:
            pass  # psql stopped at an error: its stderr says which
        finally:
            proc.stdin.close()
        proc.wait()
        messages.seek(0)
        errors = messages.read()
    if proc.returncode != 0:
        if created:
            with connect(where, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(into)))
        reason = _first_line(errors.decode("utf-8", "replace"), where.secrets)
        raise BackupFailed(f"Restoring {path.name} into {into} failed and was undone: {reason}.")


def _prepare_target(where: Target, into: str) -> tuple[bool, int]:
    """Create ``into`` if missing (True), or check that it is empty (False); and the
    server's major version."""
    with connect(where, autocommit=True) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        major = int(version[0]) // 10000 if version else 0
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (into,)).fetchone()
        if not found:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(into)))
            return True, major
    with connect(where, dbname=into) as conn:
        row = conn.execute(NON_EMPTY).fetchone()
        if row and row[0]:
            raise UsageError(
                f"Database {into} is not empty ({row[0]} relations); restore into a new or "
                "empty database so nothing is overwritten."
            )
    return False, major


def _first_line(text: str, secrets: tuple[str, ...]) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # psql prefixes errors with 'psql:FILE:LINE: ERROR:'; the ERROR line is the useful one.
    useful = next((line for line in lines if "ERROR" in line or "error" in line), None)
    return redact(useful or (lines[0] if lines else "no error output"), secrets)
