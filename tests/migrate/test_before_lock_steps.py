"""The loader's ``-- aicrm:before-lock`` steps: marked, and only first in an up file."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicrm.errors import UsageError
from aicrm.migrate import loader
from tests.support import copy_migrations

EARLY = "-- step: read first\n-- aicrm:before-lock\nSELECT 1;\n"
LOCKED = "-- aicrm:lock leads\n-- step: change\nSELECT 2;\n"


def test_before_lock_steps_are_marked(tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path, (0,))
    (folder / "001_x.sql").write_text(LOCKED.replace("-- step: change", EARLY + "-- step: change"))
    steps = loader.load(folder)[1].steps
    assert [(s.description, s.before_lock) for s in steps] == [
        ("read first", True),
        ("change", False),
    ]


def test_a_before_lock_step_after_a_locked_one_is_refused(tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path, (0,))
    (folder / "001_x.sql").write_text(LOCKED + EARLY)
    with pytest.raises(UsageError, match="before-lock"):
        loader.load(folder)


def test_001_resolves_before_its_locks() -> None:
    first = loader.load()[1]
    assert first.steps[0].before_lock
    assert not any(step.before_lock for step in first.steps[1:])
