"""Reading a CSV import file: its header, checked in Python before anything is sent, and
its rows streamed into the staging table by ``COPY`` (steps 1 and 2 of an import, see
:mod:`aicrm.crm.importer`)."""

from __future__ import annotations

import codecs
import csv
import difflib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psycopg
from psycopg import sql

from aicrm.crm import _import_mapping as import_mapping
from aicrm.crm._import_checks import STAGING
from aicrm.crm._import_history import LEADS_HISTORY
from aicrm.crm._import_mapping import Mapping
from aicrm.crm._import_spec import LEADS, Spec
from aicrm.db import Connection
from aicrm.db.errors import primary_message, translated
from aicrm.errors import InvalidInput

CHUNK = 1 << 20  # bytes per COPY write
BOM = codecs.BOM_UTF8
# The columns only a historical import's lead file has (for the hint of a plain one).
HISTORY_ONLY = frozenset(LEADS_HISTORY.names()) - frozenset(LEADS.names())

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Header:
    columns: tuple[str, ...]  # canonical names, in file order
    skip: int  # bytes of a byte order mark to leave out
    size: int  # bytes in the file
    # every column of the file, in order, as staged: the canonical names and, with a
    # mapping, aicrm_attr_N (an attribute) or aicrm_skip_N (ignored)
    staged: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()  # (staged column, attribute key)


def read_header(path: Path, spec: Spec, mapping: Mapping | None = None) -> Header:
    """The file's header, checked; :class:`InvalidInput` for an unreadable or empty
    file, a header that is not UTF-8, and unknown, repeated, unnamed or missing
    columns."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = handle.read(CHUNK)
            while b"\n" not in start and len(start) < size and len(start) < 16 * CHUNK:
                more = handle.read(CHUNK)
                if not more:
                    break
                start += more
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror or exc}.") from None
    skip = len(BOM) if start.startswith(BOM) else 0
    first = start[skip:].split(b"\n", 1)[0].rstrip(b"\r")
    if not start[skip:].strip():
        raise InvalidInput(
            f"{path} is empty: a {spec.noun} file starts with a header line naming its "
            f"columns, e.g. {','.join(spec.names()[1:5])}."
        )
    if b"\x00" in first:
        raise InvalidInput(f"{path} is not a UTF-8 text file (line 1 has a NUL byte).")
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path} is not UTF-8 (line 1 has the byte 0x{first[exc.start]:02x}); "
            "save it as CSV UTF-8 and import it again."
        ) from None
    names = next(csv.reader([text]), [])
    if mapping is None:
        columns = checked_columns(path, spec, names)
        return Header(columns, skip, size, columns)
    staged: list[str] = []
    attributes: list[tuple[str, str]] = []
    mapped: list[str] = []
    for position, raw in enumerate(names, start=1):
        target = mapping.target(raw, path)
        if target == import_mapping.IGNORE:
            staged.append(f"aicrm_skip_{position}")
        elif target.startswith(import_mapping.ATTRIBUTE):
            staged.append(f"aicrm_attr_{position}")
            attributes.append((staged[-1], target[len(import_mapping.ATTRIBUTE) :]))
        else:
            staged.append(target.lower())
            mapped.append(target)
    columns = checked_columns(path, spec, mapped)
    return Header(columns, skip, size, tuple(staged), tuple(attributes))


def checked_columns(path: Path, spec: Spec, names: list[str]) -> tuple[str, ...]:
    """The header's names as ``spec``'s columns; :class:`InvalidInput` for an unknown,
    unnamed or repeated column, or for missing ones."""
    known = spec.names()
    found: list[str] = []
    for position, raw in enumerate(names, start=1):
        name = raw.strip().lower()
        if not name:
            raise InvalidInput(f"Column {position} of the header of {path} has no name.")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            delimited = len(names) == 1 and any(d in raw for d in ";\t|")
            if delimited:
                hint = " (the file seems to use another delimiter than the comma)"
            elif name in HISTORY_ONLY and LEADS_HISTORY.is_historical_form_of(spec):
                hint = " (a column of a historical import: add --historical)"
            raise InvalidInput(
                f"Unknown column '{raw.strip()}' in the header of {path}{hint}; a {spec.noun} "
                f"file may have: {', '.join(known)}."
            )
        if name in found:
            raise InvalidInput(f"Column '{name}' appears twice in the header of {path}.")
        found.append(name)
    if not set(found) & set(spec.needs_one_of):
        raise InvalidInput(
            f"The header of {path} has none of the columns {', '.join(spec.needs_one_of)}: "
            f"a {spec.noun} needs {spec.needs_text}."
        )
    spec.check_parents(path, set(found))
    return tuple(found)


# --- the upload -----------------------------------------------------------------


@translated()
def upload(conn: Connection, path: Path, header: Header, progress: Progress | None) -> int:
    """Stream the file into the staging table; the number of rows staged."""
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true, ENCODING 'UTF8')").format(
        STAGING, sql.SQL(", ").join(sql.Identifier(c) for c in header.staged)
    )
    checker = Utf8Check(path)
    done = header.skip

    def refused(exc: psycopg.Error) -> InvalidInput | None:
        """Ragged rows, an unclosed quote: the line and what is wrong with it."""
        return copy_refusal(path, exc, header) if isinstance(exc, psycopg.DataError) else None

    try:
        with translated(refused), path.open("rb") as handle, conn.cursor() as cur:
            handle.seek(header.skip)
            with cur.copy(copy_sql) as copy:
                for chunk in chunks(handle):
                    checker.feed(chunk)
                    copy.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(min(done, header.size), header.size)
                checker.close()
            rows = cur.rowcount
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if progress is not None:
        progress(header.size, header.size)
    return rows


def chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The file in chunks, without the line breaks at its very end (COPY needs no
    final one, and blank lines there would read as rows of one empty field)."""
    held = b""
    while chunk := handle.read(CHUNK):
        chunk = held + chunk
        body = chunk.rstrip(b"\r\n")
        held = chunk[len(body) :]
        if body:
            yield body


class Utf8Check:
    """Refuses bytes that are not UTF-8 (or are NUL), naming the line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.lines = 1

    def feed(self, chunk: bytes) -> None:
        try:
            self.decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            position = max(exc.start - len(self.decoder.getstate()[0]), 0)
            line = self.lines + chunk.count(b"\n", 0, position)
            raise InvalidInput(
                f"{self.path} is not UTF-8 (line {line} has the byte "
                f"0x{chunk[position]:02x}); nothing was imported. Save it as CSV UTF-8 "
                "and import it again."
            ) from None
        nul = chunk.find(b"\x00")
        if nul >= 0:
            line = self.lines + chunk.count(b"\n", 0, nul)
            raise InvalidInput(
                f"{self.path} is not a text file (line {line} has a NUL byte); nothing "
                "was imported."
            )
        self.lines += chunk.count(b"\n")

    def close(self) -> None:
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{self.path} is not UTF-8 (its last line ends inside a character); "
                "nothing was imported."
            ) from None


COPY_LINE = re.compile(r"\bline (\d+)")


def copy_refusal(path: Path, exc: psycopg.Error, header: Header) -> InvalidInput:
    """The refusal of a file COPY could not read, naming the line and why."""
    primary = primary_message(exc).rstrip(".")
    match = COPY_LINE.search(exc.diag.context or "")
    where = f"line {match.group(1)}" if match else "a line"
    expected = len(header.staged)
    if primary.startswith("extra data after last expected column"):
        reason = f"{where} has more fields than the header's {expected}"
    elif primary.startswith("missing data for column"):
        reason = f"{where} has fewer fields than the header's {expected}"
    elif primary.startswith("unterminated CSV quoted field"):
        reason = f"{where} opens a quoted field that is never closed"
    elif primary.startswith(("unquoted carriage return", "unquoted newline")):
        reason = (
            f"{where} ends its line differently from the first line (\\r\\n and \\n mixed); "
            "save the file with one kind of line break"
        )
    else:
        reason = f"{where} cannot be read: {primary}"
    return InvalidInput(f"{path}: {reason}; nothing was imported.")
