"""Calibration on replays of past days, measured: the reliability table per decile.

    python bench/bench_replay.py --leads 10000

Generates a CRM of ``--leads`` leads (``aicrm sample generate``, seed 7) in a fresh
embedded PostgreSQL under a temporary AICRM_HOME, migrates it, trains (``aicrm ai
train``) and prints, as Markdown, the active model's ``params.replay``: the Platt
scaling fit on the older replayed days and, on the newest replayed day (which the fit
did not see), each decile's leads, mean score before and after, and observed rate.
Append the output to bench/RESULTS.md by hand, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import psycopg

from aicrm import config
from aicrm.db import target

ACTIVE = "SELECT version, params -> 'replay', metrics -> 'auc' FROM ai_models WHERE active"


def cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "aicrm", *args], env=env, check=False,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"aicrm {' '.join(args)} failed: {done.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aicrm-replay-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DB_"))}
        env.pop("DATABASE_URL", None)
        env["AICRM_HOME"] = home
        started = time.perf_counter()
        cli(env, "db", "migrate")
        cli(env, "sample", "generate", "--leads", str(options.leads), "--seed", "7", "--force")
        cli(env, "ai", "train")
        seconds = time.perf_counter() - started
        where = target(config.resolve(env))
        with psycopg.connect(where.conninfo) as conn:
            row = conn.execute(ACTIVE).fetchone()
        cli(env, "db", "stop")
    if row is None or row[1] is None:
        raise SystemExit("no replay calibration was stored (see aicrm ai train's notes)")
    version, replay, auc = row
    before = {i: r for i, r in enumerate(replay["reliability_before"])}
    print(f"`python bench/bench_replay.py --leads {options.leads}` on {platform.node()} "
          f"({os.cpu_count()} cores, {platform.python_version()}), "
          f"{datetime.now(UTC):%Y-%m-%d}; {seconds:.0f} s; model {version} (CV AUC {auc:.3f}); "
          f"Platt a={replay['platt'][0]:.3f}, b={replay['platt'][1]:.3f} fit on "
          f"{len(replay['days']) - 1} older days, judged on "
          f"{replay['judged_on'][:10]}:")  # fmt: skip
    print()
    print("| decile | leads | mean score before | mean score after | observed rate | gap after |")
    print("|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(replay["reliability"]):
        gap = abs(r["predicted"] - r["observed"])
        print(f"| {i + 1} | {r['n']} | {before[i]['predicted']:.3f} | {r['predicted']:.3f} | "
              f"{r['observed']:.3f} | {gap:.3f} |")  # fmt: skip
    print()
    print(f"Calibration error (count-weighted): {replay['calibration_error_before']:.4f} before, "
          f"{replay['calibration_error']:.4f} after.")  # fmt: skip


if __name__ == "__main__":
    main()
