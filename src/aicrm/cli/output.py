"""How the CLI talks: results on stdout, progress and errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def say(text: str) -> None:
    stdout.print(text, markup=False)


def error(message: str) -> None:
    """One line on stderr: 'error: …'."""
    stderr.print(f"[bold red]error:[/] {_one_line(message)}")


def _one_line(message: str) -> str:
    from rich.markup import escape

    return escape(" ".join(message.split()))


@contextmanager
def progress(enabled: bool = True) -> Iterator[Any]:
    """A spinner on stderr that shows the current step, when stderr is a terminal.

    Yields a function taking the step's text; a no-op when not interactive."""
    if not (enabled and stderr.is_terminal):
        yield lambda _text: None
        return
    with stderr.status("starting") as status:
        yield lambda text: status.update(text)
