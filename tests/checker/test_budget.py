"""The checker's step budget: a verdict that does not depend on the machine's speed or load."""

from __future__ import annotations

from pygmy.checker.linearizability import Operation, check
from pygmy.raft.sim.workload import WORKLOADS


def _concurrent_unknown_adds(n: int) -> list[Operation]:
    """n overlapping additions of unknown outcome, then a read that no subset of them explains."""
    ops = [Operation(client=i, input=("add", 1 << i), output=None, call=0, ret=None) for i in range(n)]
    return ops + [Operation(client=n, input=("read", None), output=-1, call=1, ret=2)]


def test_a_step_budget_gives_the_same_undecided_verdict_every_time() -> None:
    history = _concurrent_unknown_adds(12)
    verdicts = {check(history, WORKLOADS["counter"].model, timeout=None, max_steps=50).explanation for _ in range(3)}
    assert len(verdicts) == 1 and "gave up after 50 steps" in verdicts.pop()


def test_enough_steps_decide_what_too_few_cannot() -> None:
    history = _concurrent_unknown_adds(8)
    model = WORKLOADS["counter"].model
    assert check(history, model, timeout=None, max_steps=5).ok is None
    assert check(history, model, timeout=None, max_steps=10_000_000).ok is False
