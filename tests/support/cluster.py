"""A real Pygmy cluster for tests: one OS process per node on free loopback ports, a temporary data dir.

Nodes are started the way an operator would start them, either one by one (`pygmy serve KIND ID`) or all
at once (`pygmy up`), from a TOML configuration written here. Tests can kill -9 a node and restart it
with the same command line. Every process started is remembered by PID and killed when the cluster
stops, and again at interpreter exit if a test run is interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import requests

from pygmy.common.ports import free_ports  # noqa: F401  (tests import it from here)
from pygmy.config_env import ENV_KEYS

PYTHON = sys.executable
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
REPLICAS = 3  # per backend group, in the configuration the tests write

# Every process the tests (and benchmarks) started and may still be running: PID -> Popen; killed at exit.
LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _kill_leftovers() -> None:
    for pid, proc in list(LIVE.items()):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        LIVE.pop(pid, None)


atexit.register(_kill_leftovers)


def pygmy_command(*args: str) -> list[str]:
    return [PYTHON, "-m", "pygmy", *args]


def port_is_listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port` (bind tests mislead: TIME_WAIT blocks them)."""
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (read from /proc; Linux only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent PID; the command name (field 2) may hold spaces, so split after ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has exited already


@dataclass(frozen=True)
class NodeSpec:
    kind: str
    id: int
    port: int
    raft_port: int
    scheme: str = "http"
    host: str = "127.0.0.1"  # another address when the node runs in a network namespace of its own

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.id}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


class Cluster:
    """One cluster's configuration, data dir, processes and logs, all under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        catalog_file: Path | None = None,
        mode: Literal["serve", "up"] = "serve",
        data_dir_flag: bool = False,
        ready_timeout: float = READY_TIMEOUT,
        replicas: int = REPLICAS,
        raft: dict[str, int] | None = None,
        frontend: dict[str, float] | None = None,
        secrets_in_config: bool = True,
        tls: bool = False,
        frontends: int = 1,
        cache: dict[str, int | bool] | None = None,
        env: dict[str, dict[str, str]] | None = None,
        control: bool = False,
        server: dict[str, float] | None = None,
        all_env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        # False: the configuration names no secrets, so `pygmy up` generates them (read back after start).
        self.secrets_in_config = secrets_in_config
        # `pygmy up`'s control endpoint on a free port ([control] in the configuration), when asked for.
        self.control_port: int | None = free_ports(1)[0] if control else None
        self.all_env = all_env or {}  # variables every node is started with (e.g. PYGMY_BIND_HOST)
        self.raft = raft or {}  # a [raft] table for the configuration, e.g. {"snapshot_every": 50}
        self.frontend = frontend or {}  # a [frontend] table, e.g. {"heartbeat_ms": 60000}
        self.cache = cache or {}  # a [cache] table, e.g. {"lease_ms": 1000}
        # Extra environment per node name, e.g. {"frontend-1": {"PYGMY_TEST_FILL_DELAY_MS": "800"}} (test hooks).
        self.env = env or {}
        self.frontends = frontends
        self.server = server or {}  # a [server] table, e.g. {"max_connections": 1000}
        self.root.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.catalog_file = catalog_file
        self.ready_timeout = ready_timeout
        # Random secrets, so a node that ignores the configuration's values cannot pass by accident.
        self.admin_token = "admin-" + secrets.token_hex(8)
        self.cluster_secret = "secret-" + secrets.token_hex(8)
        self.data_dir = root / "data"
        self.cluster_id: str | None = None  # written into the config when set (a restored cluster's)
        # With data_dir_flag the data dir is given on the command line; the config names another one.
        self.data_dir_flag = data_dir_flag
        self.config_data_dir = root / "config-data" if data_dir_flag else self.data_dir
        self.logs_dir = root / "logs"
        self.logs_dir.mkdir(exist_ok=True)
        # tls: the backends serve HTTPS and TLS Raft with a CA made here; `verify` is what requests checks them with.
        self.tls_dir = root / "tls" if tls else None
        if self.tls_dir is not None:
            from pygmy.common.tls import generate

            generate(self.tls_dir, ["127.0.0.1"])
        self.verify: str | bool = str(self.tls_dir / "ca.pem") if self.tls_dir else True
        ports = iter(free_ports(frontends + 4 * replicas))
        self.nodes = [NodeSpec("frontend", i, next(ports), 0) for i in range(frontends)]
        for kind in ("catalog", "order"):
            self.nodes += [NodeSpec(kind, i, next(ports), next(ports), "https" if tls else "http") for i in range(replicas)]
        self.config_path = root / "pygmy.toml"
        self.config_path.write_text(self.config_toml())
        self.replicas = replicas  # how many of each group run (`pygmy up --replicas` may start fewer)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.up_proc: subprocess.Popen[bytes] | None = None
        self._up_children: set[int] = set()

    # -- layout -----------------------------------------------------------------------------------

    def config_toml(self) -> str:
        lines = [
            "# Written by tests/support/cluster.py",
            f'data_dir = "{self.config_data_dir}"',
        ]
        if self.secrets_in_config:
            lines += [f'admin_token = "{self.admin_token}"', f'cluster_secret = "{self.cluster_secret}"']
        if self.cluster_id is not None:
            lines.append(f'cluster_id = "{self.cluster_id}"')
        for n in self.nodes:
            lines += ["", "[[nodes]]", f'kind = "{n.kind}"', f"id = {n.id}", f'host = "{n.host}"', f"port = {n.port}"]
            if n.kind != "frontend":
                lines.append(f"raft_port = {n.raft_port}")
        if self.raft:
            lines += ["", "[raft]", *(f"{key} = {value}" for key, value in self.raft.items())]
        if self.frontend:
            lines += ["", "[frontend]", *(f"{key} = {value}" for key, value in self.frontend.items())]
        if self.tls_dir is not None:
            lines += ["", "[tls]", "enabled = true", *(f'{key} = "{self.tls_dir / name}"' for key, name in
                                                       (("ca", "ca.pem"), ("cert", "node.pem"), ("key", "node.key")))]
        if self.cache:
            lines += ["", "[cache]", *(f"{key} = {str(value).lower()}" for key, value in self.cache.items())]
        if self.control_port is not None:
            lines += ["", "[control]", "enabled = true", f"port = {self.control_port}"]
        if self.server:
            lines += ["", "[server]", *(f"{key} = {value}" for key, value in self.server.items())]
        return "\n".join(lines) + "\n"

    def set_cluster_id(self, cluster_id: str) -> None:
        """Name the cluster in its configuration (before it starts), as a restored cluster is named."""
        self.cluster_id = cluster_id
        self.config_path.write_text(self.config_toml())

    def node(self, kind: str, node_id: int = 0) -> NodeSpec:
        for n in self.nodes:
            if n.kind == kind and n.id == node_id:
                return n
        raise KeyError(f"{kind}-{node_id}")

    def url(self, kind: str, node_id: int = 0) -> str:
        return self.node(kind, node_id).url

    @property
    def frontend_url(self) -> str:
        return self.url("frontend")

    @property
    def catalog_url(self) -> str:
        return self.url("catalog")

    @property
    def order_url(self) -> str:
        return self.url("order")

    @property
    def control_url(self) -> str:
        assert self.control_port is not None, "start the cluster with control=True"
        return f"http://127.0.0.1:{self.control_port}"

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def secret_headers(self) -> dict[str, str]:
        return {"X-Pygmy-Secret": self.cluster_secret}

    @property
    def serving(self) -> list[tuple[str, int]]:
        """Every node that runs: each replica of both groups (every replica serves), then the frontend."""
        backends = [(kind, i) for kind in ("catalog", "order") for i in range(self.replicas)]
        return backends + [("frontend", i) for i in range(self.frontends)]

    def serving_nodes(self) -> list[NodeSpec]:
        return [self.node(kind, i) for kind, i in self.serving]

    # -- processes --------------------------------------------------------------------------------

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.logs_dir / f"{log_name}.log", "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The nodes read their configuration from the file this cluster wrote, not from the test's shell.
        for variable in (*ENV_KEYS, "PYGMY_CONFIG", "PYGMY_ADMIN_TOKEN"):
            env.pop(variable, None)
        env.update(self.all_env)
        env.update(self.env.get(log_name, {}))
        try:
            proc = subprocess.Popen(
                self.command(args, log_name), stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=env,
                start_new_session=True,  # a Ctrl-C in the test terminal must not reach the nodes
            )
        finally:
            log.close()
        LIVE[proc.pid] = proc
        return proc

    def command(self, args: list[str], log_name: str) -> list[str]:
        """The command line of a `pygmy` process (a subclass runs it inside a network namespace)."""
        return pygmy_command(*args)

    def _common_flags(self) -> list[str]:
        flags = ["--config", str(self.config_path)]
        if self.data_dir_flag:
            flags += ["--data-dir", str(self.data_dir)]
        return flags

    def serve_args(self, kind: str, node_id: int = 0, *, join: bool = False) -> list[str]:
        args = ["serve", kind, str(node_id), *self._common_flags()]
        if kind == "catalog" and self.catalog_file is not None:
            args += ["--catalog", str(self.catalog_file)]
        if join:
            args.append("--join")  # an empty data dir rejoins the running group instead of starting a new one
        return args

    def up_args(self) -> list[str]:
        args = ["up", *self._common_flags()]
        if self.catalog_file is not None:
            args += ["--catalog", str(self.catalog_file)]
        return args

    def start(self) -> "Cluster":
        if self.mode == "up":
            self.up_proc = self._spawn(self.up_args(), "up")
            if not self.secrets_in_config:
                self._read_generated_secrets()
            self.wait_ready(self.serving_nodes())
            self._up_children = set(children_of(self.up_proc.pid))
        else:
            for kind, i in self.serving:
                self.start_node(kind, i, wait=False)
            self.wait_ready(self.serving_nodes())
        return self

    def _read_generated_secrets(self, timeout: float = 20.0) -> None:
        path = self.data_dir / "secrets.toml"
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"pygmy up wrote no {path}\n{self.logs()}"
            time.sleep(0.05)
        stored = tomllib.loads(path.read_text())
        self.admin_token, self.cluster_secret = stored["admin_token"], stored["cluster_secret"]

    def start_node(self, kind: str, node_id: int = 0, *, wait: bool = True, join: bool = False) -> None:
        """`join`: the node's data directory was lost; it rejoins (`pygmy serve --join`)."""
        assert self.mode == "serve", "single nodes are started and killed only in serve mode"
        name = f"{kind}-{node_id}"
        old = self.procs.get(name)
        assert old is None or old.poll() is not None, f"{name} is already running"
        self.procs[name] = self._spawn(self.serve_args(kind, node_id, join=join), name)
        if wait:
            self.wait_ready([self.node(kind, node_id)])

    def kill(self, kind: str, node_id: int = 0) -> None:
        """kill -9: no shutdown hooks, no flushing; what is not on disk is gone."""
        proc = self.procs[f"{kind}-{node_id}"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)
        LIVE.pop(proc.pid, None)

    def restart(self, kind: str, node_id: int = 0, *, join: bool = False) -> None:
        self.start_node(kind, node_id, join=join)

    def is_running(self, kind: str, node_id: int = 0) -> bool:
        proc = self.procs.get(f"{kind}-{node_id}")
        return proc is not None and proc.poll() is None

    def node_data_dir(self, kind: str, node_id: int = 0) -> Path:
        """Where this node keeps its log and database (what a lost disk loses)."""
        return self.data_dir / self.node(kind, node_id).name

    def status(self, kind: str, node_id: int) -> dict | None:
        """A backend replica's /internal/status, or None if it does not answer."""
        try:
            resp = requests.get(f"{self.url(kind, node_id)}/internal/status", headers=self.secret_headers(), timeout=1.0,
                                verify=self.verify)
        except requests.RequestException:
            return None
        return resp.json() if resp.status_code == 200 else None

    def leader(self, kind: str, timeout: float = 10.0) -> tuple[int, int]:
        """(id, term) of the group's leader as its replicas report it, waiting out an election."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = [self.status(kind, i) for i in range(self.replicas)]
            leaders = [(s["term"], s["id"]) for s in statuses if s and s["role"] == "leader"]
            if leaders:
                term, node_id = max(leaders)
                return node_id, term
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {kind} group has no leader\n{self.logs()}")
            time.sleep(0.05)

    def kill_all(self) -> None:
        for kind, i in self.serving:
            self.kill(kind, i)

    def ensure_running(self) -> None:
        """Start again any serving node a previous test left dead."""
        for kind, i in self.serving:
            proc = self.procs.get(f"{kind}-{i}")
            if proc is None or proc.poll() is not None:
                self.start_node(kind, i)

    def stop(self) -> None:
        """SIGTERM everything this cluster started, SIGKILL whatever has not exited in time."""
        procs = list(self.procs.values())
        if self.up_proc is not None:
            self._up_children |= set(children_of(self.up_proc.pid))
            procs.append(self.up_proc)
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT)
            LIVE.pop(proc.pid, None)
        self.kill_orphans()
        # Stopped clusters can start again, on the same configuration and data.
        self.procs = {}
        self.up_proc = None

    def kill_orphans(self) -> list[int]:
        """kill -9 children of `pygmy up` that outlived it; returns their PIDs (a clean stop leaves none)."""
        orphans = [pid for pid in sorted(self._up_children) if pid_alive(pid)]
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return orphans

    def up_children(self) -> set[int]:
        """The node processes `pygmy up` started (as seen when it became ready)."""
        return set(self._up_children)

    # -- readiness and diagnostics ----------------------------------------------------------------

    def wait_ready(self, nodes: list[NodeSpec], timeout: float | None = None) -> None:
        """Until every node answers HTTP at all (a node loads its data before it listens)."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        pending = list(nodes)
        while pending:
            node = pending[0]
            self._check_alive(node)
            try:
                requests.get(f"{node.url}/health", timeout=1.0, verify=self.verify)
                pending.pop(0)
                continue
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.name} did not answer within the deadline\n{self.logs()}")
            time.sleep(0.05)

    def _check_alive(self, node: NodeSpec) -> None:
        proc = self.up_proc if self.mode == "up" else self.procs.get(node.name)
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{node.name}'s process exited with {proc.returncode}\n{self.logs()}")

    def log(self, name: str) -> str:
        path = self.logs_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, tail: int = 40) -> str:
        parts = []
        for path in sorted(self.logs_dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {path.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(parts)


@contextlib.contextmanager
def running_cluster(root: Path, **options: object) -> Iterator[Cluster]:
    cluster = Cluster(root, **options)  # type: ignore[arg-type]
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
