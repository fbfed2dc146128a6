"""The backup's writer: pg_dump's output copied into the file and flushed as it goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aicrm.migrate._sink import FLUSH_EVERY, Sink
from tests.conftest import Database
from tests.support import copy_migrations, table_digests

# A producer like pg_dump: writes this many bytes of a known pattern to stdout.
PRODUCER = (
    "import sys\n"
    "n = int(sys.argv[1])\n"
    "block = bytes(range(256)) * 4096\n"
    "while n > 0:\n"
    "    sys.stdout.buffer.write(block[:n]); n -= len(block)\n"
)


def _producer(size: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def test_the_whole_output_reaches_the_file(tmp_path: Path) -> None:
    size = 3 * FLUSH_EVERY + 12_345  # several flushes and a tail
    target = tmp_path / "dump.sql.partial"
    proc = _producer(size)
    assert proc.stdout is not None
    sink = Sink(proc.stdout, os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    assert proc.wait() == 0
    sink.join()
    assert sink.error is None
    data = target.read_bytes()
    assert len(data) == size
    assert data[:256] == bytes(range(256)) and data[-1] == (size - 1) % 256


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_stops_the_copy_and_the_producer(tmp_path: Path) -> None:
    # /dev/full answers every write with ENOSPC, as a full disk does.
    proc = _producer(50 * FLUSH_EVERY)
    assert proc.stdout is not None
    sink = Sink(proc.stdout, os.open("/dev/full", os.O_WRONLY))
    sink.join()
    assert sink.error is not None and "No space left" in str(sink.error)
    # The pipe is closed: the producer cannot block on it, it fails on a broken pipe.
    assert proc.wait(timeout=60) != 0


@pytest.mark.slow
def test_a_backup_that_cannot_be_written_stops_the_run_and_following_the_advice_works(
    db: Database, tmp_path: Path
) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    db.execute(
        "INSERT INTO leads (email, source) SELECT 'lead' || i || '@example.org', 'web' "
        "FROM generate_series(1, 5000) i"
    )
    (folder / "001_change.sql").write_text(
        "-- aicrm:lock leads\n-- step: change\nUPDATE leads SET source = 'changed';\n"
    )
    digests = table_digests(db)
    small, roomy = tmp_path / "small", tmp_path / "roomy"
    # The CLI with every file it writes capped at 64 kB, as on a full disk (EFBIG rather
    # than ENOSPC; Python ignores SIGXFSZ): the dump is larger. pg_dump writes into a
    # pipe, which the cap does not touch; the backup's writer hits it.
    capped = (
        "import resource, runpy, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))\n"
        "sys.argv = ['aicrm', *sys.argv[1:]]\n"
        "runpy.run_module('aicrm', run_name='__main__')\n"
    )
    refused = subprocess.run(
        [sys.executable, "-c", capped, "db", "migrate", "--migrations-dir", str(folder)],
        env={**db.env, "BACKUP_DIR": str(small)},
        cwd=db.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if "Could not write the backup" in line]
    assert len(lines) == 1 and "Nothing was changed" in lines[0], refused.stderr
    assert "set BACKUP_DIR to a folder with room" in lines[0]
    assert "Traceback" not in refused.stderr
    assert not small.exists() or list(small.iterdir()) == []  # no partial dump left
    assert table_digests(db) == digests
    # The advice, followed: a folder with room.
    done = db.cli("db", "migrate", "--migrations-dir", str(folder), env={"BACKUP_DIR": str(roomy)})
    assert done.returncode == 0, done.stderr
    assert [p.suffix for p in roomy.iterdir()] == [".sql"]
    assert db.scalar("SELECT count(*) FROM leads WHERE source = 'changed'") == 5000
