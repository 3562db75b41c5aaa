"""A caller's deadline, handed from tier to tier in a header so that no tier waits longer than its caller will.

The frontend sends `X-Pygmy-Deadline-Ms: N` (milliseconds the caller will still wait, less a margin for the
answer's way back); a replica caps its own waits (for a leader, for an index) at that, so it answers 503 while
the caller still listens instead of working on for a caller that has hung up. A tier that calls the next one
on its caller's behalf (the order leader asking the catalog during a buy) passes on what is left of it.
"""

from __future__ import annotations

import time
from typing import Mapping

from pygmy.common.errors import bad_request

DEADLINE_HEADER = "X-Pygmy-Deadline-Ms"
# Kept back from what is passed on: the time a 503 takes to travel back and be read by the caller.
RETURN_MARGIN = 0.05


def deadline_header(remaining: float) -> dict[str, str]:
    """The header that passes `remaining` seconds (less the return margin) on to the next tier."""
    return {DEADLINE_HEADER: str(max(1, int((remaining - RETURN_MARGIN) * 1000)))}


def wait_bound(headers: Mapping[str, str], default: float) -> float:
    """Seconds this tier may wait: `default`, or less when the caller's deadline header says so.

    A malformed header is ignored (it is a hint between our own tiers, not client input)."""
    raw = headers.get(DEADLINE_HEADER)
    seconds = None if raw is None else _seconds(raw)
    return default if seconds is None else min(default, seconds)


def caller_gives_up_at(headers: Mapping[str, str]) -> float | None:
    """When (time.monotonic()) the caller stops waiting, by its deadline header; None if it sent none."""
    raw = headers.get(DEADLINE_HEADER)
    seconds = None if raw is None else _seconds(raw)
    return None if seconds is None else time.monotonic() + seconds


def left_of(gives_up_at: float | None, own: float) -> float:
    """Seconds a call made now may take: its `own` deadline, or less if the caller gives up sooner."""
    return own if gives_up_at is None else min(own, gives_up_at - time.monotonic())


def client_deadline(headers: Mapping[str, str]) -> float | None:
    """Seconds a client waits for its answer, if its header says; None if it does not say.

    Unlike between tiers, a client's malformed header is its mistake and answered 400."""
    raw = headers.get(DEADLINE_HEADER)
    if raw is None:
        return None
    seconds = _seconds(raw)
    if seconds is None:
        raise bad_request(f"{DEADLINE_HEADER} must be a positive whole number of milliseconds", "bad_deadline")
    return seconds


def _seconds(raw: str) -> float | None:
    """The header's milliseconds as seconds, or None unless they are a positive whole number."""
    try:
        ms = int(raw)
    except ValueError:
        return None
    return ms / 1000 if ms > 0 else None
