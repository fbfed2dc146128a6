"""``aicrm demo``: the seed's story end to end, on a database of its own."""

from __future__ import annotations

from psycopg import sql

from aicrm import config
from aicrm.cli import output
from aicrm.db import Target, connect, target
from aicrm.errors import UsageError
from aicrm.migrate import Options, runner

DEMO_DB = "aicrm_demo"
MARK = "created by aicrm demo"


def demo() -> None:
    """Run the demo on its own database, aicrm_demo, recreated on each run."""
    where = fresh_database(target())
    output.say(f"demo database: {where.describe()}")
    with output.progress() as step:
        report = runner.migrate(Options(backup_dir=config.backup_dir(), progress=step), where)
    output.say(report.as_text())
    info = runner.status(where)
    output.say(f"\nversion {info.version:03d}, pending: {', '.join(info.pending) or 'none'}")


def fresh_database(server: Target) -> Target:
    """Drop and recreate the demo database; never drops one the demo did not make."""
    with connect(server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (DEMO_DB,),
        ).fetchone()
        if row is not None:
            if row[0] != MARK:
                raise UsageError(
                    f"A database named {DEMO_DB} exists and was not made by the demo, so the "
                    "demo will not drop it. Rename it, or point aicrm at another server."
                )
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DEMO_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(DEMO_DB), sql.Literal(MARK)
            )
        )
    return server.for_database(DEMO_DB)
