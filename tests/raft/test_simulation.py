"""The deterministic simulation: the correct core survives many faulty seeds, every planted bug is caught,
and a seed replays exactly."""

from __future__ import annotations

import os
import re
import random
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from pygmy.checker.linearizability import CheckResult
from pygmy.raft.core import RaftConfig, RaftCore
from pygmy.raft.sim import SimConfig, run_seed
from pygmy.raft.sim.bugs import KNOWN_BUGS, BuggyRaftCore, planted_core
from pygmy.raft.sim.cluster import Simulation
from pygmy.raft.sim_command import sim

# (nodes, seeds) swept on every CI run; `pygmy sim --seeds 10000` goes further.
SWEEPS = [(3, range(0, 300)), (5, range(0, 150)), (7, range(0, 40))]
BUG_BUDGET = 300  # seeds within which the simulation must report each planted bug


@pytest.mark.parametrize(("nodes", "seeds"), SWEEPS, ids=[f"{n}-nodes" for n, _ in SWEEPS])
def test_the_correct_core_passes_every_seed(nodes: int, seeds: range) -> None:
    failures = [r for r in (run_seed(seed, SimConfig(nodes=nodes)) for seed in seeds) if not r.ok]
    assert not failures, "\n".join(f"seed {r.seed}: {r.failure}" for r in failures[:3])


# Seeds that once failed, kept because of what they exercise.
REGRESSIONS = [
    # A candidate of term 30 wins on a long-delayed vote after term 31 has committed entries: a stale leader
    # need not hold entries committed in later terms (Leader Completeness speaks of higher terms only).
    (3, 11121),
]


@pytest.mark.parametrize(("nodes", "seed"), REGRESSIONS)
def test_regression_seeds_pass(nodes: int, seed: int) -> None:
    result = run_seed(seed, SimConfig(nodes=nodes))
    assert result.ok, result.failure


# Each planted bug and the invariant violation the simulation must report for it.
PLANTED = [
    ("apply_before_commit", "State Machine Safety"),
    # The disk keeps the term from before the grant, so after a crash the term goes back: two leaders of
    # one term, or a leader elected in a lower term that lacks what a higher one committed.
    ("vote_before_persist", ("Election Safety", "Leader Completeness")),
    ("commit_old_term_by_counting", "Leader Completeness"),
    # The runtime's ordering, planted in the one Ready driver that both the runtime and the simulator run.
    # Followers acknowledge entries they have not stored: a leader commits what only it holds.
    ("send_before_persist", ("Leader Completeness", "Election Safety")),
    # The leader counts its own entries before its fsync; it dies during the fsync and they are gone.
    ("leader_counts_unpersisted", "Leader Completeness"),
    # Applying an entry this replica has not yet stored: a durable state machine gets ahead of its log.
    ("apply_before_persist", "a durable state machine would be ahead of its log"),
    # A member that lost its disk votes at once: it forgot its vote, and the entries it acknowledged.
    ("wiped_member_votes", ("Leader Completeness", "Election Safety", "State Machine Safety")),
    # A leader answering reads without a heartbeat round: paused or cut off, it may have been replaced.
    ("read_without_round", "not linearizable"),
    # A member that lost its disk catches up with the first leader it hears, which may be a deposed one
    # (also shown step by step in tests/raft/test_core_rejoin.py).
    ("skip_term_probe", ("State Machine Safety", "Leader Completeness", "Election Safety")),
]


@pytest.mark.parametrize(("bug", "kind"), PLANTED)
def test_the_simulation_reports_each_planted_bug_within_the_seed_budget(bug: str, kind: str | tuple[str, ...]) -> None:
    config = SimConfig(nodes=3, bugs=frozenset({bug}))
    for seed in range(BUG_BUDGET):
        result = run_seed(seed, config)
        if not result.ok:
            break
    else:
        pytest.fail(f"{bug} went unnoticed for {BUG_BUDGET} seeds")
    kinds = (kind,) if isinstance(kind, str) else kind
    assert any(k in (result.failure or "") for k in kinds), result.failure


def test_without_client_sessions_a_retried_write_applies_twice_and_the_history_is_not_linearizable() -> None:
    config = SimConfig(nodes=3, workload="counter", sessions=False)
    for seed in range(50):
        result = run_seed(seed, config)
        if not result.ok:
            break
    else:
        pytest.fail("double applies went unnoticed")
    assert result.kind == "linearizability", result.failure


# Client sessions under pressure, on the counter (where a write applied twice shows in later reads). More
# clients leave a longer backlog of retries when faults stop, so these give the liveness write 300 ticks.
SESSION_SCENARIOS = {
    # More clients than the table holds: registrations keep expiring live sessions. Every expired write is of
    # unknown outcome, which makes long histories costly to check: 600 ticks of faults keep each check short.
    "small-table": (
        SimConfig(nodes=3, clients=4, session_table=3, workload="counter", liveness_ticks=300, ticks=600),
        range(40),
    ),
    # Clients die mid-operation and come back with a new session; their old attempts may still commit.
    "client-restarts": (SimConfig(nodes=3, client_restarts=0.2, workload="counter"), range(60)),
    # Sessions idle for more than 6 log entries expire.
    "idle-expiry": (SimConfig(nodes=3, session_idle_entries=6, workload="counter"), range(40)),
}


@pytest.mark.parametrize("scenario", sorted(SESSION_SCENARIOS))
def test_sessions_that_expire_or_restart_apply_no_write_twice_and_every_seed_passes(scenario: str) -> None:
    config, seeds = SESSION_SCENARIOS[scenario]
    results = [run_seed(seed, config) for seed in seeds]
    failures = [r for r in results if not r.ok]
    assert not failures, "\n".join(f"seed {r.seed}: {r.failure}" for r in failures[:3])
    # The scenario does what it says, in most seeds: clients restart, or writes are answered "session expired".
    exercised = [r.client_restarts if scenario == "client-restarts" else r.expired for r in results]
    assert sum(count > 0 for count in exercised) > len(results) // 2


def test_every_planted_bug_has_a_test() -> None:
    assert {bug for bug, _ in PLANTED} == KNOWN_BUGS


def test_the_simulator_runs_the_shipped_core_unless_a_bug_is_planted() -> None:
    args = (1, [1, 2, 3], RaftConfig(), random.Random(1))
    assert type(planted_core(*args)) is RaftCore
    assert type(planted_core(*args, bugs={"apply_before_commit"})) is BuggyRaftCore


def test_an_unknown_bug_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no_such_bug"):
        BuggyRaftCore(1, [1, 2, 3], RaftConfig(), random.Random(1), bugs={"no_such_bug"})
    outcome = CliRunner().invoke(_cli(), ["--seeds", "1", "--bug", "no_such_bug"])
    assert outcome.exit_code != 0 and "no_such_bug" in outcome.output


def test_a_seed_replays_exactly() -> None:
    runs = []
    for _ in range(2):
        lines: list[str] = []
        result = run_seed(11, SimConfig(nodes=5, ticks=200), trace=lines.append)
        runs.append((lines, result.events, result.time, result.committed, result.operations))
    assert runs[0] == runs[1]
    assert len(runs[0][0]) > 100


def test_a_seed_replays_exactly_in_another_process_with_other_hash_seeds() -> None:
    script = (
        "import hashlib; from pygmy.raft.sim import run_seed, SimConfig; lines = [];"
        "run_seed(5, SimConfig(nodes=3, ticks=150), trace=lines.append);"
        "print(hashlib.sha256('\\n'.join(lines).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


def test_different_seeds_explore_different_runs() -> None:
    signatures = {(r.events, r.committed) for r in (run_seed(seed, SimConfig(nodes=3, ticks=100)) for seed in range(5))}
    assert len(signatures) > 1


def test_every_run_ends_with_a_verdict_on_linearizability_and_activity() -> None:
    result = run_seed(3, SimConfig(nodes=3, ticks=200))
    assert result.ok and result.linearizable is True
    assert result.terms >= 1 and result.committed > 0 and result.operations > 0


def _checker_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    gave_up = CheckResult(None, "gave up after 20 s: 300 operations, 40 of unknown outcome")
    monkeypatch.setattr(Simulation, "check_history", lambda self: gave_up)


def test_a_run_whose_history_the_checker_cannot_decide_fails_as_undecided(monkeypatch: pytest.MonkeyPatch) -> None:
    _checker_gives_up(monkeypatch)
    result = run_seed(3, SimConfig(nodes=3, ticks=100))
    assert not result.ok and result.linearizable is None
    assert result.kind == "linearizability-undecided" and "gave up" in (result.failure or "")


def test_the_sim_command_fails_a_sweep_with_an_undecided_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    _checker_gives_up(monkeypatch)
    outcome = CliRunner().invoke(_cli(), ["--seeds", "1", "--nodes", "3", "--steps", "100"])
    assert outcome.exit_code == 1
    assert "linearizability-undecided" in outcome.output


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(sim)
    return app


def test_the_sim_command_summarizes_a_passing_sweep() -> None:
    outcome = CliRunner().invoke(_cli(), ["--seeds", "3", "--nodes", "3", "--steps", "100"])
    assert outcome.exit_code == 0, outcome.output
    assert "passed" in outcome.output and "seeds/s" in outcome.output


def test_the_sim_command_prints_a_replay_command_for_each_failing_seed_and_fails() -> None:
    outcome = CliRunner().invoke(_cli(), ["--seeds", "2", "--nodes", "3", "--bug", "apply_before_commit"])
    assert outcome.exit_code == 1
    failed = re.findall(r"seed (\d+) failed", outcome.output)
    assert failed  # a planted bug shows within two seeds
    for seed in failed:
        assert f"pygmy sim --replay {seed} --nodes 3 --trace --bug apply_before_commit" in outcome.output


def test_the_sim_command_replays_one_seed_with_a_trace() -> None:
    outcome = CliRunner().invoke(_cli(), ["--replay", "4", "--nodes", "3", "--steps", "50", "--trace"])
    assert outcome.exit_code == 0, outcome.output
    assert "deliver RequestVote" in outcome.output and "seed 4 passed" in outcome.output
