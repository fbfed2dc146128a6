"""The engine's shape: no import cycle between its modules, modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import aicrm.migrate

PACKAGE = Path(aicrm.migrate.__file__).parent
MAX_LINES = 500  # the project-wide bound (tests/test_layout.py)


def _imports(path: Path) -> set[str]:
    """The aicrm.migrate modules ``path`` imports, anywhere in it (a function-level
    import is a cycle too, only hidden)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "aicrm.migrate":
                found.update(f"aicrm.migrate.{alias.name}" for alias in node.names)
            elif node.module.startswith("aicrm.migrate."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("aicrm.migrate."))
    return {name for name in found if (PACKAGE / f"{name.rsplit('.', 1)[1]}.py").exists()}


def _graph() -> dict[str, set[str]]:
    return {
        f"aicrm.migrate.{path.stem}": _imports(path)
        for path in PACKAGE.glob("*.py")
        if path.stem != "__init__"
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_engine_modules() -> None:
    graph = _graph()
    assert "aicrm.migrate.runner" in graph and "aicrm.migrate._online" in graph
    assert "aicrm.migrate._online" in graph["aicrm.migrate.runner"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_online_mode_does_not_reach_into_the_runner() -> None:
    graph = _graph()
    for module in ("_online", "_backfill", "_online_state", "_checks", "_preflight", "_lock"):
        assert "aicrm.migrate.runner" not in graph[f"aicrm.migrate.{module}"], module


def test_one_module_takes_table_locks_and_retries() -> None:
    for path in PACKAGE.glob("*.py"):
        text = path.read_text("utf-8")
        if path.stem != "_lock":
            assert "LOCK TABLE" not in text, path.name  # _lock.lock_tables
            assert "InsufficientPrivilege" not in text, path.name  # lock.replica_mode_allowed
            assert "LockNotAvailable" not in text, path.name  # lock.retrying
            # The backfill's throttle is its one pause that is not a retry's backoff.
            assert "time.sleep(" not in text or path.stem == "_backfill", path.name


def test_engine_modules_stay_readable() -> None:
    for path in PACKAGE.glob("*.py"):
        lines = len(path.read_text("utf-8").splitlines())
        assert lines <= MAX_LINES, f"{path.name}: {lines} lines"
