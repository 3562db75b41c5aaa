"""`pygmy up`: the whole cluster on this machine as child processes, one log file per node.

It starts the frontend and the serving replica of each backend tier, waits until every node answers,
prints a status table, and on Ctrl-C or SIGTERM stops every child (SIGTERM, then SIGKILL after a grace
period) before it exits.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from pygmy.config import Config, Node, dump

STOP_GRACE = 5.0


class Cluster:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def nodes_to_start(self) -> list[Node]:
        return [
            self.config.serving("catalog"),
            self.config.serving("order"),
            *self.config.of_kind("frontend"),
        ]

    def start(self) -> Path:
        """Start the nodes; the effective configuration is written where every child can read it."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        log_dir = self.config.data_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        config_path = self.config.data_dir / "cluster.toml"
        config_path.write_text(dump(self.config))
        for node in self.nodes_to_start():
            log_file = open(log_dir / f"{node.name}.log", "ab")
            self._logs.append(log_file)
            self.procs[node.name] = subprocess.Popen(
                [sys.executable, "-m", "pygmy", "serve", node.kind, str(node.id), "--config", str(config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Own process group: the terminal's Ctrl-C reaches only us, and we stop children in order.
                start_new_session=True,
            )
        return log_dir

    def wait_ready(self, timeout: float = 30.0) -> list[str]:
        """Wait until every started node answers; returns the names of nodes that exited instead."""
        deadline = time.monotonic() + timeout
        pending = {n.name: n for n in self.nodes_to_start()}
        while pending and time.monotonic() < deadline:
            for name, node in list(pending.items()):
                if self.procs[name].poll() is not None or _answers(node):
                    del pending[name]
            time.sleep(0.1)
        return [name for name, p in self.procs.items() if p.poll() is not None] + list(pending)

    def dead(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]

    def stop(self) -> None:
        # A second Ctrl-C (or make passing the signal on) must not abort the stop half-way.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in self._logs:
            f.close()


def _answers(node: Node) -> bool:
    path = "/health" if node.kind == "frontend" else "/metrics"
    try:
        with urllib.request.urlopen(node.url + path, timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def install_stop_handlers() -> None:
    """Turn SIGTERM into KeyboardInterrupt so one code path stops the cluster for both."""

    def handler(signum: int, frame: object) -> None:
        # One-shot: make, a terminal and a supervisor may all pass the same stop on; the second copy
        # must not interrupt the clean stop the first one started.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
