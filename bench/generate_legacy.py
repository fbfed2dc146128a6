"""Create a legacy CRM database (schema 000, with anomalies) of N leads.

    python bench/generate_legacy.py --leads 1000000 --dbname legacy_1m

The server is the one aicrm would use: DATABASE_URL (or DB_*, PG*), else the
embedded PostgreSQL under AICRM_HOME (bench/out/home when AICRM_HOME is unset, so
benchmarks keep away from your own embedded database). The database is created,
brought to 000 by the migration engine (or, with --without-ledger, given the 000
schema without aicrm's ledger, as a pre-aicrm database is found in the wild),
filled by aicrm.sample.generate_legacy, then vacuumed and analysed. Prints the
counts as JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from aicrm import config
from aicrm.db import Target, embedded, script, target
from aicrm.errors import AicrmError
from aicrm.migrate import Options, loader, migrate
from aicrm.sample import generate_legacy

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"

DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"


def bench_home() -> None:
    """Point an unset AICRM_HOME at bench/out/home (for this process and its children)."""
    if not os.environ.get("AICRM_HOME"):
        os.environ["AICRM_HOME"] = str(OUT / "home")


def admin_conninfo() -> str:
    """A conninfo to the configured server, for CREATE / DROP DATABASE."""
    settings = config.resolve()
    if settings.embedded:
        return embedded.conninfo(settings.home, "postgres")
    return target(settings).conninfo


def database_conninfo(admin: str, dbname: str) -> str:
    return make_conninfo(admin, dbname=dbname)


def as_target(conninfo: str) -> Target:
    """The aicrm Target for a conninfo (as if DATABASE_URL named it)."""
    return target(
        config.resolve({"DATABASE_URL": conninfo, "AICRM_HOME": os.environ["AICRM_HOME"]})
    )


def create_database(admin: str, dbname: str, replace: bool) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute(DATABASE_EXISTS, (dbname,)).fetchone():
            if not replace:
                raise SystemExit(
                    f"error: database {dbname} exists; pass --replace to drop and recreate it"
                )
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def create_000(conninfo: str, with_ledger: bool) -> None:
    """Bring the empty database to 000: by the engine, or by 000's SQL alone."""
    if with_ledger:
        report = migrate(Options(target_version=0, backup_dir=OUT / "backups"), as_target(conninfo))
        if report.backup is not None:  # the dump of an empty database: nothing to keep
            report.backup.path.unlink(missing_ok=True)
        return
    original = loader.load()[0]
    with psycopg.connect(conninfo) as conn:
        for step in original.steps:
            conn.execute(script.trusted(step.sql))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, required=True, help="number of leads")
    parser.add_argument("--dbname", required=True, help="database to create")
    parser.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    parser.add_argument(
        "--no-anomalies", action="store_true", help="no resolvable anomalies (clean data)"
    )
    parser.add_argument(
        "--orphans", action="store_true", help="also blocking anomalies (orphaned references)"
    )
    parser.add_argument(
        "--without-ledger",
        action="store_true",
        help="the 000 schema without aicrm's ledger (a pre-aicrm database)",
    )
    parser.add_argument("--replace", action="store_true", help="drop the database if it exists")
    args = parser.parse_args(argv)

    bench_home()
    try:
        admin = admin_conninfo()
        create_database(admin, args.dbname, args.replace)
        conninfo = database_conninfo(admin, args.dbname)
        create_000(conninfo, with_ledger=not args.without_ledger)
        started = time.monotonic()
        with psycopg.connect(conninfo) as conn:
            counts = generate_legacy(
                conn,
                leads=args.leads,
                seed=args.seed,
                anomalies=not args.no_anomalies,
                orphans=args.orphans,
            )
        generated = time.monotonic() - started
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) leads, clients, contacts")
        vacuumed = time.monotonic() - started - generated
    except AicrmError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    print(
        f"generated {counts['leads']:,} leads, {counts['clients']:,} clients, "
        f"{counts['contacts']:,} contacts in {args.dbname} in {generated:.1f} s "
        f"(vacuum analyse {vacuumed:.1f} s)",
        file=sys.stderr,
    )
    print(json.dumps({"dbname": args.dbname, "seconds": round(generated, 3), "counts": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
