"""The simulated network: every message may be dropped, delayed, reordered or duplicated, and links may be cut.

A cut is directed — (src, dst) loses everything src sends to dst — so one model covers clean partitions,
an isolated node and asymmetric partitions where a node can send but not hear (or the reverse).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class LinkFaults:
    drop: float = 0.0  # probability a message is lost
    duplicate: float = 0.0  # probability it arrives twice
    min_delay: int = 1  # simulated time units (a node ticks every ~10)
    max_delay: int = 10
    slow: float = 0.0  # probability of a delay ten times longer: reorders messages far apart


class Network:
    def __init__(self, rng: random.Random, faults: LinkFaults) -> None:
        self.rng = rng
        self.faults = faults
        self.cut: set[tuple[int, int]] = set()

    def delivery_delays(self, src: int, dst: int) -> list[int]:
        """When (after now) the copies of a message from src to dst arrive; empty if it is lost."""
        if (src, dst) in self.cut or self.rng.random() < self.faults.drop:
            return []
        copies = 2 if self.rng.random() < self.faults.duplicate else 1
        return [self._delay() for _ in range(copies)]

    def _delay(self) -> int:
        delay = self.rng.randint(self.faults.min_delay, self.faults.max_delay)
        if self.rng.random() < self.faults.slow:
            delay *= 10
        return delay

    def partition(self, *groups: set[int]) -> None:
        """Cut every link between different groups (both directions)."""
        for a in groups:
            for b in groups:
                if a is not b:
                    self.cut |= {(x, y) for x in a for y in b}

    def heal(self) -> None:
        self.cut.clear()
