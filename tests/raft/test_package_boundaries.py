"""What ships stands alone: the package imports nothing from the test or benchmark harnesses, and the
production Raft core carries no switch for the simulator's planted bugs."""

from __future__ import annotations

import ast
import inspect
import random
from pathlib import Path

import pygmy
from pygmy.raft.core import RaftConfig, RaftCore

PACKAGE = Path(pygmy.__file__).parent
HARNESSES = {"tests", "support", "benchmarks"}  # `support` is how the tests import tests/support/


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_shipped_package_imports_nothing_from_the_test_or_benchmark_harnesses() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(found)
        for path in sorted(PACKAGE.rglob("*.py"))
        if (found := _imported_roots(path) & HARNESSES)
    }
    assert not offenders


def test_the_production_core_takes_no_planted_bugs() -> None:
    assert "bugs" not in inspect.signature(RaftCore).parameters
    assert not hasattr(RaftCore(1, [1, 2, 3], RaftConfig(), random.Random(1)), "bugs")
