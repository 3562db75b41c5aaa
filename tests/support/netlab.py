"""`pygmy up --netns` as the tests run it: the partition lab's cluster, its nodes' addresses read from the
cluster.toml that `pygmy up` writes."""

from __future__ import annotations

import dataclasses
import subprocess
from typing import Any

import requests

from pygmy.config import load
from .cli import run_pygmy
from .cluster import Cluster
from .polling import wait_for

DEADLINE = 60.0


class NetnsUp(Cluster):
    """`pygmy up --netns` on this cluster's configuration; the nodes' addresses are read from cluster.toml."""

    def up_args(self) -> list[str]:
        return [*super().up_args(), "--netns"]

    def start(self) -> "NetnsUp":
        self.up_proc = self._spawn(self.up_args(), "up")
        written = self.data_dir / "cluster.toml"
        wait_for("pygmy up to write cluster.toml", lambda: written.exists() or self.up_proc.poll() is not None,  # type: ignore[union-attr]
                 DEADLINE)
        self._check_alive(self.nodes[0])
        hosts = {n.name: n.host for n in load(written).nodes}
        self.nodes = [dataclasses.replace(n, host=hosts[n.name]) for n in self.nodes]
        self.wait_ready(self.serving_nodes())
        return self

    def lab(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_pygmy(*args, "--config", str(self.config_path), timeout=90)

    def control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.control_url + path, headers=self.admin_headers(), timeout=60, **kwargs)
