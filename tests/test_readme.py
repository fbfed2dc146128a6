"""Every code block of README.md runs (as sqlite-utils tests its docs).

The rule for whoever edits the README — every fenced block is one of:

- ```` ```bash ````: RUN for real by this test, with ``bash -euo pipefail``;
- ```` ```python ````: RUN for real by this test, with this Python;
- ```` ```bash norun ````: shown as bash, NOT run. Only for what cannot run inside a test:
  installing (``./scripts/demo``), a server that never returns (``aicrm serve``), a
  placeholder no test can fill (a backup's file name). Prefer making a block runnable;
- ```` ```text ````: sample output or an illustration, never run.

Any other fence (or none), and indented code blocks, fail the test: pick one of the above.

The runnable blocks run in README order, each in a new process, all on ONE fresh, empty
database (``DATABASE_URL``), with ``aicrm`` on ``PATH``, in a temporary folder holding a
link to the repository's ``migrations`` folder (and BACKUP_DIR in the temporary folder),
the way a first-time user follows the README top to bottom: a block does what it needs
first itself (``aicrm db migrate``, ``aicrm sample generate``) or relies on a block above
it. Shell variables do not carry from one block to the next. A block fails the test
when it exits non-zero; the message names its line in README.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, Database

README = REPO / "README.md"
RUN = {"bash", "python"}
KINDS = {"bash", "python", "bash norun", "text"}
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Block:
    line: int  # where its fence opens in README.md (1-based)
    info: str
    code: str


def blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, in order."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        indent, body = len(opened["indent"]), []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        found.append(Block(i + 1, opened["info"].strip(), "\n".join(body) + "\n"))
        i = j + 1
    return found


def test_every_block_says_whether_it_runs() -> None:
    text = README.read_text()
    found = blocks(text)
    assert len(found) >= 8
    for block in found:
        assert block.info in KINDS, (
            f"README.md line {block.line}: a ```{block.info} block; use one of "
            f"{sorted(KINDS)} (see tests/test_readme.py)"
        )
    # Indented code blocks (4 spaces after a blank line, outside lists) are not run.
    outside = re.sub(r"^ *```.*?^ *```$", "", text, flags=re.M | re.S)
    indented = re.findall(r"\n\n((?: {4}[^ *\-\d].*\n)+)", outside)
    assert not indented, f"indented code blocks: fence them instead: {indented}"


def test_the_python_snippets_use_the_api_as_it_is() -> None:
    """The migration snippet once read ``status()["pending"]`` (a TypeError)."""
    code = "".join(b.code for b in blocks(README.read_text()) if b.info == "python")
    assert 'status()["pending"]' not in code and "status().pending" in code


@pytest.mark.slow
def test_the_readme_runs(db: Database, tmp_path: Path) -> None:
    work = tmp_path / "readme"
    work.mkdir()
    (work / "migrations").symlink_to(REPO / "migrations")
    bindir = str(Path(sys.executable).parent)
    env = {**db.env, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "BACKUP_DIR": str(tmp_path / "backups"), "AICRM_ACTOR": "readme"}  # fmt: skip
    ran = 0
    for block in blocks(README.read_text()):
        if block.info not in RUN:
            continue
        command = (
            ["bash", "-euo", "pipefail", "-c", block.code]
            if block.info == "bash"
            else [sys.executable, "-c", block.code]
        )
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, (
            f"README.md line {block.line} ({block.info}) exited {done.returncode}:\n"
            f"{block.code}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )
        assert "Traceback" not in done.stderr, done.stderr
        ran += 1
    assert ran >= 5
