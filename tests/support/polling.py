"""Waiting for a condition in tests: poll it until it holds, bounded in time, and fail saying what never happened."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.1,
    *,
    details: Callable[[], str] | None = None,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll `check` until it returns something truthy, and return that.

    After `timeout` seconds, fail with an AssertionError naming `what` (and `details()`, e.g. the cluster's
    logs, read only then). Exceptions in `ignoring` count as "not yet" (a node that does not answer yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if value := check():
                return value
        except ignoring:
            pass
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)
