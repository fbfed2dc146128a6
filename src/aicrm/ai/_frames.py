"""Feature rows read with one binary ``COPY`` and parsed by numpy: a million leads in
seconds. :class:`Frame` holds them; :func:`read_frame` reads a whole query,
:func:`stream_frames` hands frames out while the COPY still runs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql

from aicrm.db import Connection
from aicrm.db.errors import translated

FloatArray = npt.NDArray[np.float64]
COPY_BINARY = "COPY ({}) TO STDOUT (FORMAT binary)"
NO_JIT = "SET LOCAL jit = off"
# The activity counts and the history of every lead are grouped, sorted and hashed:
# with the default 4MB they spill to disk (a 1M-lead CRM: ~60MB of temporary files).
BULK_MEMORY = "SET LOCAL work_mem = '64MB'"


@dataclass
class Frame:
    """Raw feature values (one column per feature; categories as codes) for leads."""

    ids: npt.NDArray[np.uint8]  # (n, 16): each row's lead id, as UUID bytes
    values: FloatArray  # (n, len(features)); NaN = missing; codes: 0 missing, -1 other, k
    labels: npt.NDArray[np.int8] | None  # 1 converted within the horizon, 0 not
    landmarks: FloatArray  # the observation's age in days (0 = at creation)
    groups: npt.NDArray[np.int64]  # one group per lead (for grouped cross-validation)
    positions: FloatArray | None = None  # where each lead lies in the table (POSITION)

    def with_positions(self) -> Frame:
        """The frame whose last value column is :data:`POSITION`, split off."""
        return Frame(self.ids, self.values[:, :-1], self.labels, self.landmarks, self.groups,
                     self.values[:, -1].copy())  # fmt: skip

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def lead_ids(self) -> list[str]:
        return [_uuid_text(bytes(row)) for row in self.ids]


@translated()
def read_frame(
    conn: Connection, query: sql.Composable, params: dict[str, Any], n_features: int
) -> Frame:
    """Run ``query`` as a binary COPY and parse it with numpy.

    The query returns lead_id (uuid), label (boolean or NULL), landmark (float8) and
    ``n_features`` float8 columns, none of them NULL but the label.
    """
    width = max(n_features, 1)
    label_dtype = [("label_len", ">i4"), ("label", "u1")]
    row = np.dtype(
        [("fields", ">i2"), ("id_len", ">i4"), ("id", "V16"), *label_dtype]
        + [("lm_len", ">i4"), ("lm", ">f8")]
        + [item for j in range(width) for item in ((f"l{j}", ">i4"), (f"v{j}", ">f8"))]
    )
    chunks: list[bytes] = []
    copy_query = sql.SQL(COPY_BINARY).format(query)
    with conn.transaction(), conn.cursor() as cur:
        # The feature query is long but simple: JIT compiling it costs more than it saves.
        cur.execute(NO_JIT)
        with cur.copy(copy_query, params) as copy:
            for data in copy:
                chunks.append(bytes(data))
    blob = b"".join(chunks)
    body = blob[19:-2] if len(blob) >= 21 else b""
    # A NULL label is 4 bytes (-1) with no byte after it: normalise rows to fixed width.
    return _parse(body, row, width, n_features)


def _parse(body: bytes, row: np.dtype[Any], width: int, n_features: int) -> Frame:
    fields: dict[str, Any] = dict(row.fields or {})
    null_row = np.dtype([(name, fields[name][0]) for name in row.names or () if name != "label"])
    if not body:
        return _empty(n_features)
    # Label is either present (length 1) or NULL (length -1) for the whole result.
    first_label_len = int.from_bytes(body[22:26], "big", signed=True)
    dtype = row if first_label_len == 1 else null_row
    if len(body) % dtype.itemsize:
        raise ValueError("unexpected row layout in the binary COPY")
    data = np.frombuffer(body, dtype=dtype)
    n = len(data)
    ids = np.frombuffer(data["id"].tobytes(), dtype=np.uint8).reshape(n, 16)
    values = np.empty((n, n_features), dtype=np.float64)
    for j in range(n_features):
        values[:, j] = data[f"v{j}"].astype(np.float64)
    labels = data["label"].astype(np.int8) if first_label_len == 1 else None
    _, groups = np.unique(ids.view("V16").ravel(), return_inverse=True)
    return Frame(ids, values, labels, data["lm"].astype(np.float64), groups.astype(np.int64))


HEADER = 19  # binary COPY: signature (11), flags (4), header extension length (4)


def stream_frames(
    conn: Connection, query: sql.Composable, params: dict[str, Any], n_features: int,
    rows: int = 65_536,
) -> Iterator[Frame]:  # fmt: skip
    """Like :func:`read_frame`, in frames of about ``rows`` rows handed out while the
    COPY still runs: a thread receives the COPY (PostgreSQL computes features) while
    the caller works on the rows already there (e.g. predicts). The connection is the
    thread's until the last frame has been handed out. Frames have no ``groups``
    (an empty array)."""
    blocks: queue.SimpleQueue[bytes | BaseException | None] = queue.SimpleQueue()
    copy_query = sql.SQL(COPY_BINARY).format(query)

    def receive() -> None:
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(NO_JIT)
                cur.execute(BULK_MEMORY)
                with cur.copy(copy_query, params) as copy:
                    for data in copy:
                        blocks.put(bytes(data))
        except BaseException as exc:  # handed to the caller's thread
            blocks.put(exc)
            return
        blocks.put(None)

    width = max(n_features, 1)
    thread = threading.Thread(target=receive, name="aicrm-features", daemon=True)
    thread.start()
    try:
        buffer = bytearray()
        header = False
        dtype: np.dtype[Any] | None = None
        while True:
            item = blocks.get()
            if isinstance(item, BaseException):
                raise item
            if item is not None:
                buffer += item
            if not header and len(buffer) >= HEADER:
                del buffer[:HEADER]
                header = True
            if header and dtype is None and len(buffer) >= 26:
                dtype = _row_dtype(width, int.from_bytes(buffer[22:26], "big", signed=True) == 1)
            done = item is None
            if dtype is not None and (done or len(buffer) >= rows * dtype.itemsize):
                count = len(buffer) // dtype.itemsize
                if count:
                    body = bytes(buffer[: count * dtype.itemsize])
                    del buffer[: count * dtype.itemsize]
                    yield _rows(np.frombuffer(body, dtype=dtype), n_features)
            if done:
                if len(buffer) != 2:  # what is left is the trailer, -1 as int16
                    raise ValueError("unexpected row layout in the binary COPY")
                return
    finally:
        thread.join()


def _row_dtype(width: int, labelled: bool) -> np.dtype[Any]:
    label = [("label_len", ">i4"), ("label", "u1")] if labelled else [("label_len", ">i4")]
    return np.dtype(
        [("fields", ">i2"), ("id_len", ">i4"), ("id", "V16"), *label]
        + [("lm_len", ">i4"), ("lm", ">f8")]
        + [item for j in range(width) for item in ((f"l{j}", ">i4"), (f"v{j}", ">f8"))]
    )


def _rows(data: npt.NDArray[Any], n_features: int) -> Frame:
    n = len(data)
    ids = np.frombuffer(data["id"].tobytes(), dtype=np.uint8).reshape(n, 16)
    values = np.empty((n, n_features), dtype=np.float64)
    for j in range(n_features):
        values[:, j] = data[f"v{j}"]
    names = data.dtype.names or ()
    labels = data["label"].astype(np.int8) if "label" in names else None
    return Frame(ids, values, labels, data["lm"].astype(np.float64), np.empty(0, dtype=np.int64))


def _uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _empty(n_features: int) -> Frame:
    return Frame(
        np.empty((0, 16), dtype=np.uint8),
        np.empty((0, n_features)),
        None,
        np.empty(0),
        np.empty(0, dtype=np.int64),
    )
