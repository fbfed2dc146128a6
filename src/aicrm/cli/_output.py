"""How the CLI talks: results on stdout, progress and errors on stderr."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

# C0 and C1 control characters, DEL, and the invisible marks that reorder or hide
# text (bidi overrides, zero-width): a stored value must not drive the terminal.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def printable(text: str, keep_lines: bool = False) -> str:
    """``text`` with its control characters escaped (``\\x1b``, ``\\n``…), as text and
    table output shows stored values; ``keep_lines`` keeps newlines and tabs (for
    aicrm's own multi-line messages). JSON output is never escaped this way."""

    def escaped(match: re.Match[str]) -> str:
        char = match.group()
        if keep_lines and char in "\n\t":
            return char
        return NAMED.get(char) or (
            f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
        )

    return CONTROL.sub(escaped, text)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def say(text: str) -> None:
    """A line (or lines) of text on stdout, control characters escaped."""
    stdout.print(printable(text, keep_lines=True), markup=False)


def error(message: str) -> None:
    """One line on stderr: 'error: …'."""
    stderr.print(f"[bold red]error:[/] {_one_line(message)}")


def _one_line(message: str) -> str:
    from rich.markup import escape

    return escape(printable(" ".join(message.split())))


@contextmanager
def progress(enabled: bool = True) -> Iterator[Any]:
    """A spinner on stderr that shows the current step, when stderr is a terminal.

    Yields a function taking the step's text; a no-op when not interactive."""
    if not (enabled and stderr.is_terminal):
        yield lambda _text: None
        return
    with stderr.status("starting") as status:
        yield lambda text: status.update(text)
