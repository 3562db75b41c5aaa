"""What an experiment runs against: a cluster it starts itself (`--spawn`) or one that runs (`--url`).

A spawned cluster lives in a temporary data directory on free loopback ports, runs under the same
Supervisor as `pygmy up` (with its control endpoint on), and is stopped and deleted when the experiment
ends, whatever happens (an exception, Ctrl-C).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from pygmy.cluster.control import ControlServer
from pygmy.cluster.launcher import Supervisor
from pygmy.common.ports import free_ports
from pygmy.config import Config, ControlSettings, Node, load

READY_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the frontends answer, the admin token for restocks, and the control endpoint (if any)."""

    frontends: tuple[str, ...]
    admin_token: str
    control_url: str | None
    cache: bool | None  # True/False: as asked; None: this cluster has no cache switch (cache-on only)

    @property
    def url(self) -> str:
        return self.frontends[0]


def cache_switch_exists() -> bool:
    """Whether this Pygmy has the `[cache] enabled` setting (the cache branch); without it there is no cache-off run."""
    return any(f.name == "cache" for f in dataclasses.fields(Config))


def spawn_config(data_dir: Path, *, replicas: int = 3, frontends: int = 1, cache: bool = True) -> Config:
    """The default configuration on free ports: `frontends` frontends, `replicas` per backend group."""
    ports = iter(free_ports(frontends + 4 * replicas + 1))
    nodes = [Node("frontend", i, "127.0.0.1", next(ports)) for i in range(frontends)]
    for kind in ("catalog", "order"):
        nodes += [Node(kind, i, "127.0.0.1", next(ports), next(ports)) for i in range(replicas)]  # type: ignore[arg-type]
    config = load().with_overrides(
        nodes=tuple(nodes), data_dir=data_dir, control=ControlSettings(enabled=True, port=next(ports))
    )
    if cache_switch_exists():
        settings = getattr(config, "cache")
        config = config.with_overrides(cache=dataclasses.replace(settings, enabled=cache))
    return config


@contextlib.contextmanager
def spawned(*, replicas: int = 3, frontends: int = 1, cache: bool = True,
            report: Callable[[str], None] = lambda line: None) -> Iterator[Target]:
    """A fresh cluster for the length of the `with` block; stopped and its directory removed after it."""
    root = Path(tempfile.mkdtemp(prefix="pygmy-bench-"))
    config = spawn_config(root / "data", replicas=replicas, frontends=frontends, cache=cache)
    supervisor = Supervisor(config, report=report)
    control = ControlServer(supervisor, config.control)
    stop = threading.Event()
    poller = threading.Thread(target=_poll_until, args=(supervisor, stop), name="bench-supervisor", daemon=True)
    try:
        supervisor.start()
        slow = supervisor.wait_ready(timeout=READY_TIMEOUT)
        if slow:
            raise RuntimeError(f"the spawned cluster's {', '.join(slow)} did not answer; logs in {supervisor.log_dir}")
        control.start()
        poller.start()
        yield Target(
            frontends=tuple(n.url for n in config.of_kind("frontend")),
            admin_token=supervisor.config.admin_token,  # generated at start when the config names none
            control_url=config.control.url,
            cache=cache if cache_switch_exists() else None,
        )
    finally:
        stop.set()
        if poller.is_alive():
            poller.join(timeout=5)
        control.stop()
        supervisor.stop()
        shutil.rmtree(root, ignore_errors=True)


def _poll_until(supervisor: Supervisor, stop: threading.Event) -> None:
    # The same supervision `pygmy up` gives: a node killed by an experiment is restarted.
    while not stop.wait(0.1):
        supervisor.poll()


def running(url: str, admin_token: str, control_url: str | None) -> Target:
    """A cluster someone else runs: its cache is as it was started (None: not switchable from here)."""
    return Target(frontends=(url.rstrip("/"),), admin_token=admin_token, control_url=control_url, cache=None)
