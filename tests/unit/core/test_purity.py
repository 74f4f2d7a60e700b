"""The core imports nothing of the shell: no Faust, Kafka, Redis or Prometheus, no topics/tables/agents.

Walks every module of stream_app.core with `ast` (what the source says, not what a test run happened
to import), so a shell import added anywhere in the core, even inside a function, fails here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "stream_app" / "core"
FORBIDDEN = ("faust", "mode", "aiokafka", "kafka", "redis", "prometheus_client", "topics", "tables", "agents",
             "aiohttp", "rocksdict", "socket", "asyncio")
SHELL_OF_STREAM_APP = ("stream_app.app", "stream_app.cli", "stream_app.web", "stream_app.settings",
                       "stream_app.metrics", "stream_app.loadgen", "stream_app.compose", "stream_app.faust_compat")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path.name}: relative import; write the absolute module name")
            names.add(node.module or "")
    return names


def violations(path: Path) -> list[str]:
    bad = []
    for name in imported_modules(path):
        top = name.split(".")[0]
        if top in FORBIDDEN or (top == "stream_app" and not name.startswith("stream_app.core")):
            bad.append(name)
        elif name.startswith(SHELL_OF_STREAM_APP):
            bad.append(name)
    return sorted(bad)


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_a_core_module_imports_nothing_of_the_shell(path: Path) -> None:
    assert violations(path) == []


def test_the_walk_sees_the_whole_core() -> None:
    names = {p.stem for p in CORE.glob("*.py")}
    assert {"engine", "ledger", "member", "program", "tiers", "segments", "calendar", "abuse", "notify_policy",
            "privacy", "emitted", "handlers", "due", "earning"} <= names


def test_the_check_catches_a_shell_import_inside_a_function(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f():\n    from tables.members import members\n    import faust\n    return members\n")
    assert violations(sneaky) == ["faust", "tables.members"]
