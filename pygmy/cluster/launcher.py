"""`pygmy up`: the whole cluster on this machine as supervised child processes, one log file per node.

It starts every node of the configuration (every catalog and order replica and every frontend), waits until
they answer, and then keeps them running: a node that exits is restarted after a delay that doubles on each
quick crash, unless it exited because its storage is damaged (status 78: restarting would fail the same
way; a human must wipe its directory, which the supervisor notices and then rebuilds the node from its
peers). On Ctrl-C or SIGTERM it stops every child (SIGTERM, then SIGKILL after a grace period).

Files it keeps in the data directory:
- `cluster.toml`: the effective configuration the children read (with the cluster id filled in);
- `cluster.json`: the cluster id and the names of the nodes that have ever started, so a node whose
  directory is later found empty is known to have lost its data (it rejoins instead of bootstrapping);
- `pids.json`: node name -> PID of every running node, for operators and tests;
- `logs/<name>.log`: each node's output, appended across restarts, rotated at 10 MiB (5 kept; `pygmy.common.logfiles`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Callable

from pygmy.cluster.credentials import ensure_secrets, private_umask, require_secrets, secrets_path
from pygmy.cluster.dirlock import lock_directory, unlock_directory
from pygmy.cluster.parent import parent_environment
from pygmy.common.logfiles import LOG_FILE_ENV
from pygmy.common.tls import ensure_certificates
from pygmy.config import Config, ConfigError, Node, dump

STOP_GRACE = 5.0
EXIT_DAMAGED_STORAGE = 78  # the same as pygmy.cluster.node's; not imported so `up` stays light
FIRST_DELAY = 0.5
MAX_DELAY = 10.0
STABLE_RUN = 30.0  # a node that ran this long before it exited is restarted after FIRST_DELAY again

# (node, join) -> the command line that runs it; tests swap in short-lived stand-ins.
CommandBuilder = Callable[[Node, bool], list[str]]


@dataclasses.dataclass
class Member:
    """One supervised node: its current process (if any) and its restart history."""

    node: Node
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    delay: float = FIRST_DELAY  # the wait before the next restart
    restart_at: float | None = None  # when a pending restart is due
    damaged: bool = False  # exited 78; left alone until its directory is wiped
    answered: bool = False  # answered HTTP since its last start

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Starts the nodes and, on each `poll()`, notices exits, schedules restarts and starts what is due."""

    def __init__(
        self,
        config: Config,
        *,
        restart: bool = True,
        command: CommandBuilder | None = None,
        answers: Callable[[Node], bool] | None = None,
        report: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.restart = restart
        self.report = report
        self.clock = clock
        self.answers = answers or _answers
        self.data_dir = config.data_dir
        self.log_dir = self.data_dir / "logs"
        self.config_path = self.data_dir / "cluster.toml"
        self.command = command or self._serve_command
        self.members = {n.name: Member(n) for n in config.nodes}
        self.started_once: set[str] = set()
        self._logs: list[IO[bytes]] = []
        self._locked = False
        # The control endpoint (pygmy/cluster/control.py) acts on members from its own thread.
        self.guard = threading.RLock()

    # -- starting --------------------------------------------------------------------------------

    def lock(self) -> None:
        """Own the data directory (DirectoryInUse if another `pygmy up` does) before writing anything in it."""
        if not self._locked:
            lock_directory(self.data_dir, "pygmy up")
            self._locked = True

    def start(self) -> None:
        """Write the effective configuration and start every node."""
        # The data dir holds the secrets, the databases and the logs: nobody else on the machine may read them.
        private_umask()
        self.lock()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        self.log_dir.mkdir(exist_ok=True)
        configured = bool(self.config.admin_token)
        self.config, generated = ensure_secrets(self.config)
        require_secrets(self.config)
        self.config = ensure_certificates(self.config)  # [tls] on without files: a local CA, made once
        if generated:
            self.report(f"generated a random admin token and cluster secret in {secrets_path(self.config)} (readable by you only)")
        where = (self.config.source or "the configuration") if configured else secrets_path(self.config)
        self.report(f"the admin token is in {where}; pygmy update/check/backup on this machine read it there")
        cluster_id, self.started_once = self._load_state()
        self.config = self.config.with_overrides(cluster_id=cluster_id)
        self._save_state()
        _write_atomically(self.config_path, dump(self.config))
        for member in self.members.values():
            self._spawn(member)

    def _load_state(self) -> tuple[str, set[str]]:
        path = self.data_dir / "cluster.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return self.config.cluster_id or secrets.token_hex(8), set()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); move it away only if the data dir is new") from exc
        recorded = state.get("cluster_id")
        if self.config.cluster_id is not None and recorded and recorded != self.config.cluster_id:
            raise ConfigError(
                f"{self.data_dir} holds cluster {recorded}, but the configuration names cluster "
                f"{self.config.cluster_id}: use another data dir, or drop cluster_id from the configuration"
            )
        return recorded or self.config.cluster_id or secrets.token_hex(8), set(state.get("started", []))

    def _save_state(self) -> None:
        state = {"cluster_id": self.config.cluster_id, "started": sorted(self.started_once)}
        _write_atomically(self.data_dir / "cluster.json", json.dumps(state, indent=2) + "\n")

    def _save_pids(self) -> None:
        pids = {name: m.proc.pid for name, m in self.members.items() if m.proc is not None and m.running}
        _write_atomically(self.data_dir / "pids.json", json.dumps(pids, indent=2, sort_keys=True) + "\n")

    def _serve_command(self, node: Node, join: bool) -> list[str]:
        args = [sys.executable, "-m", "pygmy", "serve", node.kind, str(node.id), "--config", str(self.config_path)]
        return args + ["--join"] if join else args

    def lost_its_data(self, node: Node) -> bool:
        """A backend that has run before but whose directory is now missing or empty."""
        if node.kind == "frontend" or node.name not in self.started_once:
            return False
        directory = self.config.node_dir(node)
        return not directory.is_dir() or not any(directory.iterdir())

    def _spawn(self, member: Member) -> None:
        node = member.node
        join = self.lost_its_data(node)
        if join:
            self.report(f"{node.name} lost its data; it rejoins and is rebuilt from its peers")
        log_file = open(self.log_dir / f"{node.name}.log", "ab")
        self._logs.append(log_file)
        # The child logs to the same file through a handler that rotates it (pygmy.common.logfiles).
        env = {**os.environ, "PYGMY_RESTARTS": str(member.restarts), **parent_environment(),
               LOG_FILE_ENV: str(self.log_dir / f"{node.name}.log")}
        member.proc = subprocess.Popen(
            self.command(node, join),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            # Own process group: the terminal's Ctrl-C reaches only us, and we stop children in order.
            start_new_session=True,
        )
        member.started_at = self.clock()
        member.restart_at = None
        member.damaged = False
        member.answered = False
        self._save_pids()

    # -- supervising -----------------------------------------------------------------------------

    def poll(self) -> None:
        """One step: record nodes that answer, handle nodes that exited, start restarts that are due."""
        with self.guard:
            self._poll()

    def _poll(self) -> None:
        changed = False
        for member in self.members.values():
            if member.running:
                if not member.answered and self.answers(member.node):
                    member.answered = True
                    if member.node.name not in self.started_once:
                        self.started_once.add(member.node.name)
                        self._save_state()
            elif member.proc is not None:
                self._exited(member)
                changed = True
            elif member.restart_at is not None and self.clock() >= member.restart_at:
                member.restarts += 1
                self._spawn(member)
            elif member.damaged and self.restart and self.lost_its_data(member.node):
                # The operator wiped the damaged directory: rebuild the node from its peers.
                member.restarts += 1
                self._spawn(member)
        if changed:
            self._save_pids()

    def _exited(self, member: Member) -> None:
        assert member.proc is not None
        status = member.proc.returncode
        member.proc = None
        name = member.node.name
        if status == EXIT_DAMAGED_STORAGE:
            member.damaged = True
            directory = self.config.node_dir(member.node)
            reason = last_line(self.log_dir / f"{name}.log")
            if "in use by another process" in reason:
                # Not damage: wiping would destroy the other owner's data. Say who holds it instead.
                self.report(f"{name} exited with status {status}: {reason}; it is not restarted.")
                return
            self.report(
                f"{name} exited with status {status}: its storage is damaged ({reason}); it is not restarted. "
                f"To have it rebuilt from its peers, wipe its directory {directory} (rm -rf {directory})"
                + ("; pygmy up then starts it again." if self.restart else " and start it again.")
            )
            return
        if not self.restart:
            self.report(f"{name} exited with status {status}; not restarting it (--no-restart)")
            return
        if self.clock() - member.started_at >= STABLE_RUN:
            member.delay = FIRST_DELAY
        self.report(f"{name} exited with status {status}; restarting in {member.delay:g} s")
        member.restart_at = self.clock() + member.delay
        member.delay = min(member.delay * 2, MAX_DELAY)

    # -- control (pygmy/cluster/control.py) ------------------------------------------------------

    def kill(self, name: str) -> None:
        """kill -9 one node; the next `poll()` sees it exit and restarts it as for any crash."""
        with self.guard:
            member = self.members[name]
            if not member.running:
                raise ProcessLookupError(f"{name} is not running")
            assert member.proc is not None
            member.proc.kill()
            member.proc.wait()
            self.report(f"{name} (pid {member.proc.pid}) killed with SIGKILL on request of the control endpoint")

    def restart_node(self, name: str) -> None:
        """Start a stopped node now, or kill -9 a running one and start it again at once."""
        with self.guard:
            member = self.members[name]
            if member.running:
                self.kill(name)
            member.proc = None
            member.restarts += 1
            self.report(f"{name} started again on request of the control endpoint")
            self._spawn(member)

    def state_of(self, name: str) -> str:
        """running, restarting (exited, a restart will follow) or stopped."""
        member = self.members[name]
        if member.running:
            return "running"
        if member.restart_at is not None or (member.proc is not None and self.restart and not member.damaged):
            return "restarting"
        return "stopped"

    def finished(self) -> bool:
        """Every node is dead and none will be restarted (a damaged node waits for a wipe only if others run)."""
        return all(not m.running and m.restart_at is None for m in self.members.values())

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.1) -> list[str]:
        """Poll until every node answered or the timeout; returns the names of nodes that have not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.finished():
            self.poll()
            if all(m.answered for m in self.members.values()):
                return []
            time.sleep(interval)
        return [name for name, m in self.members.items() if not m.answered]

    def stop(self) -> None:
        """SIGTERM every running node, SIGKILL those that have not exited after the grace period."""
        procs = [m.proc for m in self.members.values() if m.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for member in self.members.values():
            member.proc = None
            member.restart_at = None
        for f in self._logs:
            f.close()
        if self._locked:  # the files belong to whoever holds the lock: never remove another cluster's
            (self.data_dir / "pids.json").unlink(missing_ok=True)
            unlock_directory(self.data_dir)
            self._locked = False


def last_line(path: Path, tail: int = 4096) -> str:
    """The last non-empty line of a node's log: the one-line reason a node gives when it refuses to start."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail))
            lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "nothing in its log"


def _write_atomically(path: Path, text: str) -> None:
    # A reader (or a crash of `pygmy up`) never sees half a file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _answers(node: Node) -> bool:
    path = "/health" if node.kind == "frontend" else "/metrics"
    try:
        with urllib.request.urlopen(node.url + path, timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def ignore_stop_signals() -> None:
    # A second Ctrl-C (or make passing the signal on) must not abort the stop half-way.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def install_stop_handlers() -> None:
    """Turn SIGTERM into KeyboardInterrupt so one code path stops the cluster for both."""

    def handler(signum: int, frame: object) -> None:
        # One-shot: make, a terminal and a supervisor may all pass the same stop on; the second copy
        # must not interrupt the clean stop the first one started.
        ignore_stop_signals()
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
