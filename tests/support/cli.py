"""Running the `pygmy` command line as a user would: a fresh process, its output and exit code."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from .cluster import pygmy_command

# Settings a developer's shell may carry that must not leak into a test's CLI run.
_LEAKY_ENV = ("PYGMY_ADMIN_TOKEN", "PYGMY_URL", "PYGMY_CONFIG")
_TRACEBACK = "Traceback (most recent call last)"


def run_pygmy(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    # Wide, plain output: tables must not wrap titles, and no colour codes in what we match.
    full_env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    return subprocess.run(
        pygmy_command(*args), capture_output=True, text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """stdout of a run that must have worked."""
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert _TRACEBACK not in result.stdout + result.stderr, result.stderr
    return result.stdout


def failed_cleanly(result: subprocess.CompletedProcess[str]) -> str:
    """All output of a run that must have failed: non-zero exit, a message, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"expected failure, got exit 0\n{output}"
    assert _TRACEBACK not in output, output
    assert output.strip(), "a failing command must say why"
    return output


def json_output(result: subprocess.CompletedProcess[str]) -> Any:
    out = succeeded(result)
    try:
        return json.loads(out)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"--json output is not JSON ({exc}):\n{out}") from None
