"""The seed's prerequisites: server reachable, client tools (pg_dump not older than
the server), privilege to alter the tables, and free disk for the backup."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from aicrm.db import Connection, Target, tools
from aicrm.errors import AicrmError, PrerequisiteFailed

SERVER = "SELECT current_setting('server_version'), current_setting('server_version_num')::int"

NOT_OWNED = """
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s)
  AND NOT pg_has_role(current_user, c.relowner, 'USAGE')
ORDER BY c.relname
"""

CAN_CREATE = "SELECT has_schema_privilege(current_schema(), 'CREATE')"
IS_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
DATABASE_SIZE = "SELECT pg_database_size(current_database())"


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str


def server_major(conn: Connection) -> tuple[str, int]:
    row = conn.execute(SERVER).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]) // 10000


def check(
    conn: Connection,
    where: Target,
    *,
    tables: list[str],
    backup_dir: Path | None,
) -> list[Result]:
    """Run every prerequisite; ``backup_dir=None`` skips the disk check (dry-run).

    Raises :class:`PrerequisiteFailed` naming every failed prerequisite.
    """
    version, major = server_major(conn)
    results = [Result("server", True, f"PostgreSQL {version} at {where.describe()}")]
    results.extend(_tools(major))
    results.append(_privilege(conn, tables))
    if backup_dir is not None:
        results.append(_disk(conn, backup_dir))
    failed = [r for r in results if not r.ok]
    if failed:
        raise PrerequisiteFailed(
            "Prerequisites not met, nothing was changed: "
            + "; ".join(f"{r.name}: {r.detail}" for r in failed),
            details={"prerequisites": [r.__dict__ for r in results]},
        )
    return results


def _tools(server_major: int) -> list[Result]:
    results = []
    for name in ("pg_dump", "psql"):
        try:
            tool = tools.find(name)
        except AicrmError as exc:
            results.append(Result(name, False, exc.message))
            continue
        if name == "pg_dump" and tool.major < server_major:
            results.append(
                Result(
                    name,
                    False,
                    f"{tool.path} is version {tool.version} but the server is {server_major}; "
                    f"pg_dump refuses to dump a newer server. Install pg_dump {server_major} "
                    "or later, or set AICRM_PG_BIN to its folder",
                )
            )
        else:
            results.append(Result(name, True, f"{tool.path} ({tool.version})"))
    return results


def _privilege(conn: Connection, tables: list[str]) -> Result:
    row = conn.execute(IS_SUPERUSER).fetchone()
    if row and row[0]:
        return Result("privilege", True, "connected as a superuser")
    not_owned = [r[0] for r in conn.execute(NOT_OWNED, (tables,)).fetchall()]
    if not_owned:
        return Result(
            "privilege",
            False,
            f"the current user does not own {', '.join(not_owned)}, so it cannot alter them; "
            "connect as the tables' owner",
        )
    can_create = conn.execute(CAN_CREATE).fetchone()
    if not (can_create and can_create[0]):
        return Result(
            "privilege",
            False,
            "the current user cannot create objects in the schema; grant CREATE or "
            "connect as its owner",
        )
    return Result("privilege", True, f"owns {', '.join(tables) or 'the schema'}")


def _disk(conn: Connection, folder: Path) -> Result:
    row = conn.execute(DATABASE_SIZE).fetchone()
    size = int(row[0]) if row else 0
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < size:
        return Result(
            "disk",
            False,
            f"{folder} has {_mb(free)} free but the database is {_mb(size)}; free some "
            "space or set BACKUP_DIR to a larger disk",
        )
    return Result("disk", True, f"{_mb(free)} free in {folder} for a {_mb(size)} database")


def _mb(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB"
