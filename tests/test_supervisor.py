"""`pygmy up` as a supervisor: a node that dies is restarted with backoff and the rest keep running; damaged
storage (exit 78) is left for a human; a member whose data is gone rejoins with --join; the files it keeps
in the data directory.

The first half drives the Supervisor step by step with stand-in nodes that are real short-lived processes
(`python -c ...`) and a clock the test moves; the second half runs `pygmy up` itself and kill -9s its nodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pygmy.cluster.launcher import Supervisor
from pygmy.config import Config, ConfigError, Node, load
from support.cli import failed_cleanly, run_pygmy
from support.cluster import Cluster, pid_alive
from support.http import Api
from support.polling import wait_for

DEADLINE = 30.0


class Clock:
    """Time that moves only when the test says so: backoff is checked without sleeping through it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def one_of_each(tmp_path: Path, **changes: object) -> Config:
    return load().with_replicas(1).with_overrides(data_dir=tmp_path / "data", **changes)


def python(code: str) -> Callable[[Node, bool], list[str]]:
    """Every node runs `code` (a real process; PYGMY_RESTARTS is in its environment)."""
    return lambda node, join: [sys.executable, "-c", code]


class Harness:
    def __init__(self, config: Config, command: Callable[[Node, bool], list[str]], *, restart: bool = True, answers: bool = False) -> None:
        self.clock = Clock()
        self.lines: list[str] = []
        self.starts: list[tuple[str, bool]] = []

        def recording(node: Node, join: bool) -> list[str]:
            self.starts.append((node.name, join))
            return command(node, join)

        self.supervisor = Supervisor(
            config, restart=restart, command=recording, answers=lambda node: answers, report=self.lines.append, clock=self.clock
        )

    def settle(self) -> None:
        """Wait (really) until every started stand-in has exited, then poll once."""
        for member in self.supervisor.members.values():
            if member.proc is not None:
                member.proc.wait(DEADLINE)
        self.supervisor.poll()

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for h in made:
        h.supervisor.stop()


def make(harnesses: list[Harness], *args: object, **kwargs: object) -> Harness:
    h = Harness(*args, **kwargs)  # type: ignore[arg-type]
    harnesses.append(h)
    return h


# -- restarting, step by step ----------------------------------------------------------------------


def test_a_node_that_exits_is_restarted_with_the_restart_count_in_its_environment(tmp_path: Path, harnesses: list[Harness]) -> None:
    # The stand-in exits with 10 + the PYGMY_RESTARTS it was given, so the exit status shows what it saw.
    h = make(harnesses, one_of_each(tmp_path), python("import os, sys; sys.exit(10 + int(os.environ['PYGMY_RESTARTS']))"))
    h.supervisor.start()
    h.settle()
    assert h.said("catalog-0 exited with status 10; restarting in 0.5 s")
    h.clock.advance(0.5)
    h.supervisor.poll()
    h.settle()
    assert h.said("catalog-0 exited with status 11; restarting in 1 s")
    assert h.supervisor.members["catalog-0"].restarts == 1


def test_the_restart_delay_doubles_up_to_10_s(tmp_path: Path, harnesses: list[Harness]) -> None:
    h = make(harnesses, one_of_each(tmp_path), python("raise SystemExit(3)"))
    h.supervisor.start()
    delays = []
    for _ in range(7):
        h.settle()
        member = h.supervisor.members["order-0"]
        assert member.restart_at is not None
        delays.append(member.restart_at - h.clock.now)
        h.clock.advance(delays[-1] - 0.25)
        h.supervisor.poll()
        assert member.proc is None, "restarted before its delay was over"
        h.clock.advance(0.25)
        h.supervisor.poll()
        assert member.proc is not None
    assert delays == [0.5, 1, 2, 4, 8, 10, 10]


def test_the_delay_resets_after_a_node_has_run_30_s(tmp_path: Path, harnesses: list[Harness]) -> None:
    h = make(harnesses, one_of_each(tmp_path), python("raise SystemExit(3)"))
    h.supervisor.start()
    for _ in range(3):  # 0.5, 1, 2: the next would be 4
        h.settle()
        h.clock.advance(10)
        h.supervisor.poll()
    member = h.supervisor.members["frontend-0"]
    h.clock.advance(30)  # this run "lasted" 30 s before its exit is seen
    h.settle()
    assert member.restart_at == h.clock.now + 0.5


def test_with_no_restart_a_dead_node_stays_dead_and_the_supervisor_finishes_when_all_are(tmp_path: Path, harnesses: list[Harness]) -> None:
    h = make(harnesses, one_of_each(tmp_path), python("raise SystemExit(1)"), restart=False)
    h.supervisor.start()
    h.settle()
    h.clock.advance(60)
    h.supervisor.poll()
    assert len(h.starts) == 3, "nothing may be restarted"
    assert h.said("catalog-0 exited with status 1; not restarting it (--no-restart)")
    assert h.supervisor.finished()


def test_a_node_whose_storage_is_damaged_is_not_restarted_and_the_operator_is_told_what_to_do(tmp_path: Path, harnesses: list[Harness]) -> None:
    config = one_of_each(tmp_path)
    h = make(harnesses, config, python("raise SystemExit(78)"))
    h.supervisor.start()
    h.settle()
    h.clock.advance(60)
    h.supervisor.poll()
    assert len(h.starts) == 3
    line = next(line for line in h.lines if line.startswith("catalog-0"))
    assert "storage is damaged" in line and "not restarted" in line
    assert str(config.data_dir / "catalog-0") in line, "name the directory to wipe"
    assert h.supervisor.finished(), "every node is dead and none will be restarted"


def test_a_damaged_node_is_started_again_with_join_once_its_directory_is_wiped(tmp_path: Path, harnesses: list[Harness]) -> None:
    config = one_of_each(tmp_path)
    (config.data_dir / "catalog-0").mkdir(parents=True)
    (config.data_dir / "catalog-0" / "wal").write_bytes(b"garbage")
    h = make(harnesses, config, python("import os, sys, time; time.sleep(0.3); sys.exit(78 if os.environ['PYGMY_RESTARTS'] == '0' else 0)"), answers=True)
    h.supervisor.start()
    h.supervisor.poll()  # they "answer": every node has started once
    h.settle()
    h.clock.advance(60)
    h.supervisor.poll()
    assert ("catalog-0", True) not in h.starts
    (config.data_dir / "catalog-0" / "wal").unlink()  # the operator wipes it
    h.supervisor.poll()
    assert ("catalog-0", True) in h.starts
    assert h.said("catalog-0 lost its data; it rejoins and is rebuilt from its peers")


# -- the files in the data directory ---------------------------------------------------------------


def test_the_cluster_id_is_made_once_and_kept_across_starts(tmp_path: Path, harnesses: list[Harness]) -> None:
    config = one_of_each(tmp_path)
    first = make(harnesses, config, python("pass"))
    first.supervisor.start()
    cluster_id = json.loads((config.data_dir / "cluster.json").read_text())["cluster_id"]
    assert len(cluster_id) == 16
    assert f'cluster_id = "{cluster_id}"' in (config.data_dir / "cluster.toml").read_text()
    first.supervisor.stop()
    second = make(harnesses, config, python("pass"))
    second.supervisor.start()
    assert second.supervisor.config.cluster_id == cluster_id


def test_the_configurations_cluster_id_is_used_and_another_data_dirs_is_refused(tmp_path: Path, harnesses: list[Harness]) -> None:
    h = make(harnesses, one_of_each(tmp_path, cluster_id="given"), python("pass"))
    h.supervisor.start()
    assert json.loads((tmp_path / "data" / "cluster.json").read_text())["cluster_id"] == "given"
    other = make(harnesses, one_of_each(tmp_path, cluster_id="another"), python("pass"))
    with pytest.raises(ConfigError, match="holds cluster given"):
        other.supervisor.start()


def test_nodes_that_answered_are_remembered_and_a_wiped_one_is_started_with_join(tmp_path: Path, harnesses: list[Harness]) -> None:
    config = one_of_each(tmp_path)
    h = make(harnesses, config, python("import time; time.sleep(0.3)"), answers=True)
    h.supervisor.start()
    assert h.starts == [(n.name, False) for n in config.nodes]
    h.supervisor.poll()
    started = json.loads((config.data_dir / "cluster.json").read_text())["started"]
    assert started == sorted(n.name for n in config.nodes)
    pids = json.loads((config.data_dir / "pids.json").read_text())
    assert set(pids) == set(started) and all(isinstance(p, int) for p in pids.values())
    h.settle()  # every node exits; catalog-0 and order-0 have no directory (never wrote one): "lost"
    h.clock.advance(0.5)
    h.supervisor.poll()
    assert ("catalog-0", True) in h.starts and ("order-0", True) in h.starts
    assert ("frontend-0", False) in h.starts[3:], "a frontend keeps no data: never --join"


def test_a_node_that_has_never_answered_is_not_started_with_join(tmp_path: Path, harnesses: list[Harness]) -> None:
    h = make(harnesses, one_of_each(tmp_path), python("pass"), answers=False)
    h.supervisor.start()
    h.settle()
    h.clock.advance(0.5)
    h.supervisor.poll()
    assert all(not join for _, join in h.starts)


def test_a_node_that_exits_on_damaged_storage_exits_78_with_one_line_and_no_traceback() -> None:
    code = (
        "from pygmy.cluster.node import exit_if_storage_damaged\n"
        "from pygmy.raft.storage import StorageCorrupt\n"
        "import logging; logging.basicConfig()\n"
        "def serve():\n"
        "    try:\n"
        "        raise StorageCorrupt('wal: the record at byte 64 does not decode')\n"
        "    except StorageCorrupt as exc:\n"
        "        raise ExceptionGroup('serving', [exc])\n"
        "exit_if_storage_damaged(serve, 'catalog-1', 'data/catalog-1')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    assert "catalog-1" in result.stderr and "damaged" in result.stderr and "byte 64" in result.stderr


# -- pygmy up, for real ----------------------------------------------------------------------------


class UpCluster(Cluster):
    """A cluster run by `pygmy up` with extra flags; knows its nodes' PIDs from pids.json."""

    def __init__(self, root: Path, *flags: str) -> None:
        self.flags = flags
        super().__init__(root, mode="up")
        if "--replicas" in flags:
            self.replicas = int(flags[flags.index("--replicas") + 1])

    def up_args(self) -> list[str]:
        return [*super().up_args(), *self.flags]

    def pids(self) -> dict[str, int]:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return dict(json.loads((self.data_dir / "pids.json").read_text()))
        return {}

    def wait_for(self, what: str, check: Callable[[], object], timeout: float = DEADLINE) -> object:
        return wait_for(what, check, timeout, details=self.logs)

    def wait_all_started(self, names: set[str]) -> None:
        def all_started() -> bool:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return names <= set(json.loads((self.data_dir / "cluster.json").read_text())["started"])
            return False

        self.wait_for(f"{sorted(names)} answering", all_started, timeout=60)

    def stop(self) -> None:
        self._up_children |= set(self.pids().values())  # restarted nodes too, should pygmy up leave any
        super().stop()


@pytest.fixture
def up_cluster(tmp_path: Path) -> Iterator[Callable[..., UpCluster]]:
    made: list[UpCluster] = []

    def start(*flags: str) -> UpCluster:
        c = UpCluster(tmp_path / f"up{len(made)}", *flags)
        made.append(c)
        c.start()
        return c

    yield start
    for c in made:
        c.stop()


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


ALL_SEVEN = {"frontend-0", *(f"{kind}-{i}" for kind in ("catalog", "order") for i in range(3))}


def test_up_starts_every_replica_and_restarts_a_killed_one_while_the_rest_keep_serving(up_cluster: Callable[..., UpCluster]) -> None:
    c = up_cluster()
    c.wait_all_started(ALL_SEVEN)
    before = c.pids()
    assert set(before) == ALL_SEVEN, "every node of the configuration runs, not only replica 0"
    assert all(environ(pid)["PYGMY_RESTARTS"] == "0" for pid in before.values())
    os.kill(before["catalog-1"], signal.SIGKILL)
    new_pid = c.wait_for("catalog-1 coming back", lambda: (p := c.pids().get("catalog-1")) != before["catalog-1"] and p)
    assert isinstance(new_pid, int) and pid_alive(new_pid)
    assert environ(new_pid)["PYGMY_RESTARTS"] == "1"
    assert "catalog-1 exited with status -9; restarting in 0.5 s" in c.log("up")
    assert {n: p for n, p in c.pids().items() if n != "catalog-1"} == {n: p for n, p in before.items() if n != "catalog-1"}
    assert Api(c.frontend_url).lookup(1)["id"] == 1


def test_up_with_no_restart_leaves_a_killed_node_dead_and_keeps_the_rest_running(up_cluster: Callable[..., UpCluster]) -> None:
    c = up_cluster("--no-restart")
    c.wait_all_started(ALL_SEVEN)
    before = c.pids()
    os.kill(before["order-2"], signal.SIGKILL)
    c.wait_for("the exit being noticed", lambda: "order-2" not in c.pids())
    time.sleep(2)  # four times the first restart delay: long enough for a restart that should not happen
    assert "order-2" not in c.pids()
    assert "order-2 exited with status -9; not restarting it (--no-restart)" in c.log("up")
    assert c.up_proc is not None and c.up_proc.poll() is None, "pygmy up keeps running"
    assert Api(c.frontend_url).lookup(1)["id"] == 1
    assert all(pid_alive(pid) for name, pid in c.pids().items())


def test_up_restarts_a_member_whose_data_was_wiped_with_join(up_cluster: Callable[..., UpCluster]) -> None:
    c = up_cluster()
    c.wait_all_started(ALL_SEVEN)
    before = c.pids()
    os.kill(before["catalog-2"], signal.SIGKILL)
    shutil.rmtree(c.data_dir / "catalog-2")  # within the 0.5 s before the restart
    new_pid = c.wait_for("catalog-2 coming back", lambda: (p := c.pids().get("catalog-2")) != before["catalog-2"] and p)
    assert isinstance(new_pid, int)
    cmdline = Path(f"/proc/{new_pid}/cmdline").read_bytes().split(b"\0")
    assert b"--join" in cmdline
    assert "catalog-2 lost its data; it rejoins and is rebuilt from its peers" in c.log("up")


def test_up_with_one_replica_starts_one_node_per_tier(up_cluster: Callable[..., UpCluster]) -> None:
    c = up_cluster("--replicas", "1")
    c.wait_all_started({"frontend-0", "catalog-0", "order-0"})
    assert set(c.pids()) == {"frontend-0", "catalog-0", "order-0"}
    effective = load(c.data_dir / "cluster.toml")
    assert [n.name for n in effective.nodes] == ["frontend-0", "catalog-0", "order-0"]
    assert effective.node("catalog", 0).port == c.node("catalog", 0).port, "replica 0 keeps its port"


def test_up_exits_when_every_node_is_dead_and_none_will_be_restarted(up_cluster: Callable[..., UpCluster]) -> None:
    c = up_cluster("--no-restart", "--replicas", "1")
    c.wait_all_started({"frontend-0", "catalog-0", "order-0"})
    for pid in c.pids().values():
        os.kill(pid, signal.SIGKILL)
    assert c.up_proc is not None
    assert c.up_proc.wait(DEADLINE) == 1
    assert "every node has exited" in c.log("up")


# -- configurations pygmy up refuses ---------------------------------------------------------------


def layout_with(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    layout = Cluster(tmp_path / "cluster")  # only its configuration: nothing is started
    layout.config_path.write_text(edit(layout.config_path.read_text()))
    return layout.config_path


def drop_last_order_node(text: str) -> str:
    return text[: text.rindex("[[nodes]]")]


def drop_a_raft_port(text: str) -> str:
    """Without the last node's (order-2's) raft_port line."""
    start = text.rindex("raft_port")
    return text[:start] + text[text.index("\n", start) + 1 :]


@pytest.mark.parametrize(
    "edit, words",
    [
        (drop_last_order_node, ["order tier has 2 nodes", "odd"]),
        (drop_a_raft_port, ["order-2 needs a raft_port"]),
        (lambda t: t + "\n[raft]\nheartbeat_ticks = 10\nelection_ticks = 15\n", ["raft.election_ticks (15)", "twice"]),
        (lambda t: t + "\n[raft]\ntick_ms = 0\n", ["raft.tick_ms", "positive"]),
        (lambda t: t + "\n[raft]\nspeed = 3\n", ["unknown key in [raft]", "speed"]),
    ],
    ids=["even group", "missing raft_port", "election vs heartbeat", "zero tick", "unknown raft key"],
)
def test_up_refuses_a_bad_configuration_with_exit_2_and_a_clear_message(tmp_path: Path, edit: Callable[[str], str], words: list[str]) -> None:
    config_path = layout_with(tmp_path, edit)
    result = run_pygmy("up", "--config", str(config_path), timeout=60)
    out = failed_cleanly(result)
    assert result.returncode == 2, out
    for word in words:
        assert word in out, out
    assert not (tmp_path / "cluster" / "data" / "pids.json").exists(), "nothing was started"


@pytest.mark.parametrize("n", ["2", "0"])
def test_up_refuses_an_even_replica_count_with_exit_2(tmp_path: Path, n: str) -> None:
    layout = Cluster(tmp_path / "cluster")
    result = run_pygmy("up", "--config", str(layout.config_path), "--replicas", n, timeout=60)
    out = failed_cleanly(result)
    assert result.returncode == 2 and "odd" in out and "survives no more crashes" in out


def test_serve_join_of_a_frontend_is_refused(tmp_path: Path) -> None:
    layout = Cluster(tmp_path / "cluster")
    result = run_pygmy("serve", "frontend", "0", "--join", "--config", str(layout.config_path), timeout=30)
    out = failed_cleanly(result)
    assert result.returncode == 2 and "--join" in out
