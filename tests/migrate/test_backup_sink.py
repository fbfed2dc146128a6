"""The backup's writer: pg_dump's output copied into the file and flushed as it goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aicrm.migrate._sink import FLUSH_EVERY, Sink

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
