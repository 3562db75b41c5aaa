"""A node that `pygmy up` started dies with it, however `pygmy up` dies (kill -9 included).

Without this, a killed supervisor leaves its nodes serving, re-parented to PID 1 and holding the ports and
the data directories, so the next `pygmy up` cannot start. `pygmy up` names itself in the environment of
each node (`PYGMY_PARENT_PID`); the node then asks the kernel for SIGTERM when its parent exits
(`PR_SET_PDEATHSIG`, Linux) and stops as on a Ctrl-C: it hands over leadership and closes its database.
A node started by hand (`pygmy serve`, under systemd or a container runtime) has no such variable and
keeps running on its own: it has no supervisor whose death should end it.

The node sets this on itself rather than in a `preexec_fn` of `pygmy up`: that runs between fork and exec,
which is unsafe in a process that has threads (the terminal spinner is one).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

PARENT_ENV = "PYGMY_PARENT_PID"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

log = logging.getLogger(__name__)


def parent_environment() -> dict[str, str]:
    """What `pygmy up` adds to a node's environment so that the node dies with it."""
    return {PARENT_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """If a supervisor started this process, be sent SIGTERM when it exits; exit now if it already has."""
    expected = os.environ.pop(PARENT_ENV, None)  # popped: whatever this process starts is not a node of up
    if expected is None or not expected.isdigit():
        return
    if not _set_parent_death_signal(signal.SIGTERM):
        log.warning("this system cannot end a node when pygmy up dies (no prctl); stop nodes by hand if it is killed")
        return
    # The supervisor may have died between starting this process and the line above: then the kernel will
    # never send the signal, and the parent is already someone else (PID 1 or a subreaper).
    if os.getppid() != int(expected):
        log.error("pygmy up (PID %s), which started this node, has exited; the node stops", expected)
        sys.exit(0)


def _set_parent_death_signal(signum: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return bool(prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)
