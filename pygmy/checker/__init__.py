"""Checks recorded client histories for linearizability; everything lives in `linearizability`."""

from pygmy.checker.linearizability import *  # noqa: F403 - the package re-exports the module's public names
from pygmy.checker.linearizability import __all__ as __all__
