"""pg_dump's output to the backup file, made durable as it is written.

pg_dump used to write straight into the file, which was fsynced once at the end: the
whole dump (hundreds of MB at 1M leads) sat dirty in the page cache and went to the
disk in one burst, either at that fsync or when the kernel's writeback came for it.
While such a burst is under way, every fsync of the server's WAL queues behind it, and
every commit of the live application waits for its WAL's fsync (the online bench's
slowest operations were all such waits: docs/online-migration.md). So pg_dump writes
into a pipe, and a thread copies the pipe into the file and flushes it every
:data:`FLUSH_EVERY` bytes: the disk sees the backup as a steady stream of small writes,
which the WAL's fsyncs pass between. (The bench did not isolate this cause as it did
the checks' temporary files; the change follows the mechanism.)
"""

from __future__ import annotations

import os
import threading
from typing import IO

FLUSH_EVERY = 8 << 20  # bytes written between two fdatasync of the backup file
CHUNK = 1 << 20


class Sink:
    """Copies ``stream`` into the open file ``fd`` on a thread of its own, flushing
    every :data:`FLUSH_EVERY` bytes and at the end; closes both when done. An error
    writing the file (a full disk) stops the copy, and closing the pipe then makes
    pg_dump fail too; :attr:`error` says what happened."""

    def __init__(self, stream: IO[bytes], fd: int) -> None:
        self._stream = stream
        self._fd = fd
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._copy, name="aicrm-backup", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        unsynced = 0
        try:
            while chunk := self._stream.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                unsynced += len(chunk)
                if unsynced >= FLUSH_EVERY:
                    os.fdatasync(self._fd)
                    unsynced = 0
            os.fsync(self._fd)
        except OSError as exc:
            self.error = exc
        finally:
            self._stream.close()  # pg_dump, still writing, then fails on a broken pipe
            os.close(self._fd)

    def join(self) -> None:
        """Wait until the copy has ended (pg_dump closed its output, or an error)."""
        self._thread.join()


__all__ = ["FLUSH_EVERY", "Sink"]
