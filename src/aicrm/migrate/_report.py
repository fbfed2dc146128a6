"""What a run did or would do: one structure, rendered as text or as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from aicrm.migrate._dependents import Dependent
from aicrm.migrate._prerequisites import Result
from aicrm.migrate._snapshot import RowChanges, summarize
from aicrm.migrate.backup import Backup

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class Finding:
    """An integrity check's result: how many rows, up to ten sample ids, and the
    query that lists them all."""

    migration: str
    check: str
    severity: str
    description: str
    count: int
    samples: list[str]
    query: str


@dataclass(frozen=True)
class CheckResult:
    migration: str
    check: str
    description: str
    ok: bool
    failures: list[str]


@dataclass(frozen=True)
class StepTiming:
    migration: str
    step: str
    seconds: float


@dataclass
class Report:
    action: str
    database: str
    dry_run: bool
    from_version: int
    to_version: int
    outcome: str = "nothing to do"
    baseline_recorded: bool = False
    migrations: list[str] = field(default_factory=list)
    prerequisites: list[Result] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # Objects using what the plan drops (aicrm.migrate._dependents), and what the
    # compatibility window did (aicrm.migrate.compat).
    dependents: list[Dependent] = field(default_factory=list)
    compat: list[str] = field(default_factory=list)
    backup: Backup | None = None
    steps: list[StepTiming] = field(default_factory=list)
    lock_attempts: int = 0
    lock_wait_seconds: float = 0.0
    lock_held_seconds: float = 0.0
    # The bound on each of the run's own statements (seconds; 0: none), SET LOCAL.
    statement_timeout: float = 0.0
    # The online backfill's throttle on replication lag (--max-replica-lag): its bound
    # (None: no throttle), the longest lag it saw, how long and how many times it
    # waited, and a note when it could not see the standbys' progress.
    replica_lag_bound: float | None = None
    replica_lag_max: float | None = None
    replica_wait_seconds: float = 0.0
    replica_waits: int = 0
    replica_note: str | None = None
    # The backfill's pauses to keep its WAL under --max-wal-rate (seconds in all).
    wal_wait_seconds: float = 0.0
    # The backfill's pauses after its batches, --pause-ratio and --throttle (seconds
    # in all), and the ratio.
    pace_seconds: float = 0.0
    pause_ratio: float | None = None
    objects_added: list[str] = field(default_factory=list)
    objects_dropped: list[str] = field(default_factory=list)
    rows_changed: list[RowChanges] = field(default_factory=list)
    verification: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    # Wall times of the run's parts (seconds), as far as it got: "prerequisites",
    # "integrity_checks" (the first migration's, before the transaction),
    # "backup_after_checks" (the wait for pg_dump once the checks were done: the
    # backup ran alongside them, and backup.seconds is its whole time),
    # "before_changes" (from the start of the run to the transaction) and "changes"
    # (the transaction: locks, steps, verification, commit).
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.backup is not None:
            data["backup"]["path"] = str(self.backup.path)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def as_text(self) -> str:
        """A readable account for a terminal or a log."""
        mode = " (dry run: rolled back, nothing kept)" if self.dry_run else ""
        out = [
            f"{self.action} {self.database}{mode}",
            f"  version: {_version(self.from_version)} -> {_version(self.to_version)}"
            f"  outcome: {self.outcome}",
        ]
        if self.baseline_recorded:
            out.append("  recognised the original schema: recorded as baseline 000")
        if self.migrations:
            out.append("  migrations: " + ", ".join(self.migrations))
        if self.prerequisites:
            out.append("prerequisites:")
            out += [
                f"  {'ok ' if r.ok else 'NO '} {r.name}: {r.detail}" for r in self.prerequisites
            ]
        if self.findings:
            out.append("integrity checks:")
            for f in self.findings:
                out.append(f"  {f.count:>8}  {f.check} [{f.severity}] {f.description}")
                if f.count and f.severity == "blocking":
                    out.append(f"            samples: {', '.join(f.samples)}")
                    out.append(f"            list all: {' '.join(f.query.split())}")
        if self.dependents:
            handled = " (the window below took care of the views and functions)" * bool(self.compat)
            out.append(f"dependents (objects using what the migration drops){handled}:")
            for d in self.dependents:
                out += [f"  {line}" for line in d.as_text().splitlines()]
        if self.backup is not None:
            out.append(
                f"backup: {self.backup.path} ({self.backup.bytes:,} bytes, "
                f"{self.backup.seconds:.1f} s, verified complete)"
            )
        if "before_changes" in self.timings:
            t = self.timings
            out.append(
                f"before the changes: {t['before_changes']:.2f} s (prerequisites "
                f"{t.get('prerequisites', 0.0):.2f} s; integrity checks "
                f"{t.get('integrity_checks', 0.0):.2f} s"
                + (
                    f" and backup {self.backup.seconds:.2f} s, side by side"
                    if self.backup is not None
                    else ""
                )
                + ")"
            )
        if self.steps:
            out.append("steps:")
            out += [f"  {s.seconds:8.3f} s  {s.migration}: {s.step}" for s in self.steps]
            out.append(
                f"  locks: waited {self.lock_wait_seconds:.3f} s over {self.lock_attempts} "
                f"attempt(s); held {self.lock_held_seconds:.3f} s; statement timeout "
                + (f"{self.statement_timeout:g} s" if self.statement_timeout else "none")
            )
        if self.replica_lag_bound is not None:
            seen = "none seen" if self.replica_lag_max is None else f"{self.replica_lag_max:.1f} s"
            out.append(
                f"replicas: bound {self.replica_lag_bound:g} s, longest lag {seen}; waited "
                f"{self.replica_wait_seconds:.1f} s over {self.replica_waits} batch(es)"
            )
            if self.replica_note:
                out.append(f"  {self.replica_note}")
        if self.pause_ratio is not None:
            out.append(
                f"pace: the backfill paused {self.pace_seconds:.1f} s in all after its batches "
                f"(--pause-ratio {self.pause_ratio:g})"
            )
        if self.wal_wait_seconds:
            out.append(f"WAL rate: the backfill paused {self.wal_wait_seconds:.1f} s in all")
        if self.objects_added or self.objects_dropped:
            out.append(
                f"objects: {len(self.objects_added)} added, {len(self.objects_dropped)} dropped"
            )
            out += [f"  + {name}" for name in summarize(self.objects_added)]
            out += [f"  - {name}" for name in summarize(self.objects_dropped)]
        if self.rows_changed:
            out.append("rows changed:")
            out += [
                f"  {r.table}: {r.inserted} inserted, {r.updated} updated, {r.deleted} deleted"
                for r in self.rows_changed
            ]
        if self.verification:
            out.append("verification:")
            for c in self.verification:
                status = "ok " if c.ok else "FAILED"
                detail = "" if c.ok else f" ({', '.join(c.failures[:SAMPLE_SIZE])})"
                out.append(f"  {status} {c.migration}: {c.description}{detail}")
        if self.compat:
            out.append("compatibility window:")
            out += [f"  {note}" for note in self.compat]
        if self.error:
            out.append(f"error: {self.error}")
        out.append(f"took {self.seconds:.2f} s")
        return "\n".join(out)


def _version(version: int) -> str:
    return "empty" if version < 0 else f"{version:03d}"
