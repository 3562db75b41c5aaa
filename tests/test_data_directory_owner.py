"""One owner per data directory, and no node outlives the `pygmy up` that started it.

Real processes throughout: a second `pygmy serve` of the same node and a second `pygmy up` on the same
data directory (each on other ports, so only the directory is shared) must be refused at once with exit
78 and one line naming the holder, leaving the first cluster untouched; and kill -9 of `pygmy up` must
take every node with it, freeing the ports for the next start.
"""

from __future__ import annotations

import os
import signal
import sys
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from support.cli import failed_cleanly, run_pygmy
from support.cluster import LIVE, Cluster, children_of, pid_alive, port_is_listening, pygmy_command
from support.http import Api

EXIT_REFUSED = 78
DEADLINE = 30.0


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[list[Cluster]]:
    made: list[Cluster] = []
    yield made
    for c in made:
        c.stop()


def one_replica(root: Path, clusters: list[Cluster], **options: object) -> Cluster:
    c = Cluster(root, replicas=1, **options)  # type: ignore[arg-type]
    clusters.append(c)
    return c


def a_book_is_served(c: Cluster) -> None:
    assert Api(c.frontend_url).get("/lookup/1").status_code == 200


def test_a_second_serve_of_a_node_is_refused_with_78_naming_the_holder_and_a_kill_9_frees_the_lock(tmp_path: Path, clusters: list[Cluster]) -> None:
    first = one_replica(tmp_path / "first", clusters).start()
    holder = first.procs["catalog-0"].pid
    other_ports = one_replica(tmp_path / "second", clusters)  # only its configuration is used
    result = run_pygmy("serve", "catalog", "0", "--config", str(other_ports.config_path), "--data-dir", str(first.data_dir), timeout=60)
    out = failed_cleanly(result)
    assert result.returncode == EXIT_REFUSED, out
    assert "in use by another process" in out and f"PID {holder}, catalog-0" in out, out
    assert str(first.node_data_dir("catalog", 0)) in out
    a_book_is_served(first)
    first.kill("catalog", 0)  # the kernel drops the lock with its holder, however it dies
    first.start_node("catalog", 0)
    a_book_is_served(first)


def test_a_second_up_on_a_data_directory_is_refused_with_78_and_writes_nothing_there(tmp_path: Path, clusters: list[Cluster]) -> None:
    first = one_replica(tmp_path / "first", clusters, mode="up").start()
    assert first.up_proc is not None
    written = (first.data_dir / "cluster.toml").read_bytes()
    pids = (first.data_dir / "pids.json").read_bytes()
    other_ports = one_replica(tmp_path / "second", clusters)
    result = run_pygmy("up", "--config", str(other_ports.config_path), "--data-dir", str(first.data_dir), timeout=60)
    out = failed_cleanly(result)
    assert result.returncode == EXIT_REFUSED, out
    assert "in use by another process" in out and f"PID {first.up_proc.pid}, pygmy up" in out, out
    assert (first.data_dir / "cluster.toml").read_bytes() == written, "the first cluster's configuration is kept"
    assert (first.data_dir / "pids.json").read_bytes() == pids
    assert not any(port_is_listening(n.port) for n in other_ports.nodes), "none of the second cluster's nodes started"
    a_book_is_served(first)


def test_kill_9_of_up_takes_every_node_with_it_and_frees_the_ports(tmp_path: Path, clusters: list[Cluster]) -> None:
    c = one_replica(tmp_path / "c", clusters, mode="up").start()
    assert c.up_proc is not None
    nodes = children_of(c.up_proc.pid)
    assert len(nodes) == 3, nodes
    os.kill(c.up_proc.pid, signal.SIGKILL)
    c.up_proc.wait(DEADLINE)
    start = time.monotonic()
    deadline = start + DEADLINE
    while time.monotonic() < deadline and any(pid_alive(p) for p in nodes):
        time.sleep(0.05)
    survivors = [p for p in nodes if pid_alive(p)]
    c.kill_orphans()  # whatever survived, so the assertion below does not leave it serving
    assert not survivors, f"nodes {survivors} outlived pygmy up"
    print(f"every node of a killed pygmy up exited {time.monotonic() - start:.2f} s after it")
    ports = [p for n in c.nodes for p in (n.port, n.raft_port) if p]
    assert not [p for p in ports if port_is_listening(p)], "the ports are free"


def test_a_node_whose_supervisor_is_already_gone_when_it_starts_exits_at_once(tmp_path: Path, clusters: list[Cluster]) -> None:
    # The window between fork and PR_SET_PDEATHSIG: the node sees it has been re-parented and stops.
    c = one_replica(tmp_path / "c", clusters)
    env = {**os.environ, "PYGMY_PARENT_PID": "1" if os.getpid() != 1 else "2"}
    proc = subprocess.Popen(
        pygmy_command(*c.serve_args("catalog", 0)),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    LIVE[proc.pid] = proc
    out, _ = proc.communicate(timeout=DEADLINE)
    LIVE.pop(proc.pid, None)
    assert proc.returncode == 0 and "has exited; the node stops" in out, out
    assert not (c.node_data_dir("catalog", 0) / "raft").exists(), "it stopped before opening its storage"


def test_up_reports_a_node_refused_for_a_directory_in_use_with_its_reason_and_never_says_wipe(tmp_path: Path) -> None:
    from pygmy.cluster.launcher import Supervisor
    from pygmy.config import load

    config = load().with_replicas(1).with_overrides(data_dir=tmp_path / "data")
    refusal = "catalog-0 refuses to start: /x/catalog-0 is in use by another process (PID 7, catalog-0)"
    code = f"import sys; print({refusal!r}, flush=True); sys.exit(78)"
    lines: list[str] = []
    supervisor = Supervisor(config, command=lambda node, join: [sys.executable, "-c", code],
                            answers=lambda node: False, report=lines.append)
    try:
        supervisor.start()
        for member in supervisor.members.values():
            assert member.proc is not None
            member.proc.wait(DEADLINE)
        supervisor.poll()
    finally:
        supervisor.stop()
    line = next(line for line in lines if line.startswith("catalog-0"))
    assert "in use by another process (PID 7, catalog-0)" in line and "not restarted" in line, line
    assert "wipe" not in line and "rm -rf" not in line, line
