"""Deterministic simulation of a Raft cluster: many seeds, each a whole faulty run replayable exactly.

`run_seed(seed, SimConfig(...))` runs one; `pygmy.raft.sim_command.sim` is the command line.
"""

from pygmy.raft.sim.cluster import SimConfig, SimResult, Simulation, run_seed
from pygmy.raft.sim.invariants import Violation

__all__ = ["SimConfig", "SimResult", "Simulation", "Violation", "run_seed"]
