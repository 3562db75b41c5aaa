"""Every name the code uses is defined, and every import is used: pyflakes over the package, the tests and the
benchmarks. A merge that drops a helper one file still calls fails here in seconds, not in one test of a
20-minute run (it happened: a removed `_wait_for`)."""

from __future__ import annotations

from pathlib import Path

from pyflakes import api, messages
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("pygmy", "tests", "benchmarks", "scripts")
FATAL = (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport, messages.UnusedImport,
         messages.ImportShadowedByLoopVar, messages.RedefinedWhileUnused)


class _Collect(Reporter):
    def __init__(self) -> None:
        self.found: list[str] = []

    def flake(self, message: messages.Message) -> None:
        # A package's __init__ re-exports on purpose; elsewhere an unused import is dead weight.
        if isinstance(message, FATAL) and not (isinstance(message, messages.UnusedImport)
                                                and message.filename.endswith("__init__.py")):
            self.found.append(f"{message.filename}:{message.lineno}: {message.message % message.message_args}")

    def unexpectedError(self, filename: str, msg: str) -> None:
        self.found.append(f"{filename}: {msg}")

    def syntaxError(self, filename: str, msg: str, lineno: int, offset: int, text: str) -> None:
        self.found.append(f"{filename}:{lineno}: {msg}")


def test_no_undefined_name_and_no_unused_import() -> None:
    reporter = _Collect()
    for folder in CHECKED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            api.checkPath(str(path), reporter)
    assert not reporter.found, "\n".join(reporter.found)


def test_the_package_bounds_waits_with_asyncio_timeout_not_wait_for() -> None:
    """On Python 3.11 `asyncio.wait_for` can swallow a cancellation (when its inner step finishes as it is
    cancelled), and a task cancelled on shutdown then runs on: a Raft transport's close() hung that way
    (tests/test_tls.py). `async with asyncio.timeout(...)` has no such race."""
    found = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "pygmy").rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if "wait_for(" in line
             and "asyncio" in line]
    assert not found, "asyncio.wait_for in: " + ", ".join(found)
