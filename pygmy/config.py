"""Cluster configuration: every node (kind, id, host, port), the data directory and the secrets.

One TOML file plays the part of the reference design's `sv_info.py`. Without a file, the built-in
default puts everything on 127.0.0.1 with the frontend at http://127.0.0.1:8080 and three replicas
per backend tier.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

import tomli_w

from pygmy import config_values as values
from pygmy.config_values import ConfigError

if TYPE_CHECKING:
    from pygmy.raft.node import GroupOptions

NodeKind = Literal["frontend", "catalog", "order"]
KINDS: tuple[NodeKind, ...] = ("frontend", "catalog", "order")

DEFAULT_TOML = """\
# Pygmy cluster configuration. Every node of every tier, by kind and id.
data_dir = "data"
# No admin_token or cluster_secret: `pygmy up` generates both in <data_dir>/secrets.toml (pygmy.cluster.credentials).

[[nodes]]
kind = "frontend"
id = 0
host = "127.0.0.1"
port = 8080

[[nodes]]
kind = "catalog"
id = 0
host = "127.0.0.1"
port = 8101
raft_port = 9101

[[nodes]]
kind = "catalog"
id = 1
host = "127.0.0.1"
port = 8102
raft_port = 9102

[[nodes]]
kind = "catalog"
id = 2
host = "127.0.0.1"
port = 8103
raft_port = 9103

[[nodes]]
kind = "order"
id = 0
host = "127.0.0.1"
port = 8201
raft_port = 9201

[[nodes]]
kind = "order"
id = 1
host = "127.0.0.1"
port = 8202
raft_port = 9202

[[nodes]]
kind = "order"
id = 2
host = "127.0.0.1"
port = 8203
raft_port = 9203
"""


# Where a backend replica with an id past the configured ones listens: (HTTP, Raft) base ports, + id.
DEFAULT_PORT_BASES: dict[str, tuple[int, int]] = {"catalog": (8101, 9101), "order": (8201, 9201)}
BACKEND_KINDS: tuple[NodeKind, ...] = ("catalog", "order")


@dataclasses.dataclass(frozen=True)
class RaftSettings:
    """The `[raft]` table: timing and durability of every backend group."""

    tick_ms: int = 10
    heartbeat_ticks: int = 3
    election_ticks: int = 15
    snapshot_every: int = 10_000
    sync: bool = True

    def __post_init__(self) -> None:
        for key in ("tick_ms", "heartbeat_ticks", "election_ticks", "snapshot_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"raft.{key} must be a positive integer, not {value!r}")
        if not isinstance(self.sync, bool):
            raise ConfigError(f"raft.sync must be true or false, not {self.sync!r}")
        if self.election_ticks <= 2 * self.heartbeat_ticks:
            # A follower must be able to miss a heartbeat (or see one late) without starting an election.
            raise ConfigError(
                f"raft.election_ticks ({self.election_ticks}) must be more than twice raft.heartbeat_ticks "
                f"({self.heartbeat_ticks}): otherwise one late heartbeat starts an election"
            )

    def group_options(self) -> "GroupOptions":
        from pygmy.raft.core import RaftConfig
        from pygmy.raft.node import GroupOptions

        return GroupOptions(
            tick_seconds=self.tick_ms / 1000,
            raft=RaftConfig(election_ticks=self.election_ticks, heartbeat_ticks=self.heartbeat_ticks),
            snapshot_every=self.snapshot_every,
            sync=self.sync,
        )


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """The `[server]` table: how long a client may take, and how many connections a process holds
    (enforced by `pygmy.common.connections`)."""

    header_timeout_s: float = 10.0
    # Longer than the tier client's own pool keep-alive (aiohttp's 15 s), so a pooled connection is
    # closed by the client that reuses it, never by this server just as it is reused.
    keepalive_s: float = 75.0
    max_connections: int = 10_000

    def __post_init__(self) -> None:
        for key in ("header_timeout_s", "keepalive_s"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise ConfigError(f"server.{key} must be a number of seconds in (0, 3600], not {value!r}")
        cap = self.max_connections
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 1_000_000:
            raise ConfigError(f"server.max_connections must be an integer from 1 to 1000000, not {cap!r}")


@dataclasses.dataclass(frozen=True)
class FrontendSettings:
    """The `[frontend]` table: how a frontend watches the replicas and how long it tries before a 503."""

    heartbeat_ms: int = 500  # between heartbeats to each replica (the reference waited 5 s)
    election_wait_ms: int = 4000  # a request waits this long for a leader: an election plus one cache lease
    retry_budget: float = 0.2  # retries allowed per request sent, so a dead tier is not hammered

    def __post_init__(self) -> None:
        for key in ("heartbeat_ms", "election_wait_ms"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"frontend.{key} must be a positive integer, not {value!r}")
        budget = self.retry_budget
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget <= 10:
            raise ConfigError(f"frontend.retry_budget must be a number from 0 to 10, not {budget!r}")


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    """The `[tls]` table: TLS between the nodes (pygmy.common.tls); PEM files, made by `pygmy up` if left out."""

    enabled: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

@dataclasses.dataclass(frozen=True)
class CacheSettings:
    """The `[cache]` table: the frontend's cache of lookups and searches and its leases (docs/design.md)."""

    enabled: bool = True
    size: int = 10_000  # entries
    lease_ms: int = 1500
    drift_ms: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"cache.enabled must be true or false, not {self.enabled!r}")
        for key in ("size", "lease_ms", "drift_ms"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"cache.{key} must be a positive integer, not {value!r}")


@dataclasses.dataclass(frozen=True)
class ControlSettings:
    """The `[control]` table: the control endpoint of `pygmy up` (pygmy/cluster/control.py), off by default."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8090

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"control.enabled must be true or false, not {self.enabled!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"control.host must be a non-empty string, not {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigError(f"control.port must be a port number, not {self.port!r}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class Node:
    kind: NodeKind
    id: int
    host: str
    port: int
    raft_port: int | None = None
    scheme: str = dataclasses.field(default="http", compare=False)  # https for a backend when [tls] is on

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.id}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class Config:
    nodes: tuple[Node, ...]
    data_dir: Path
    admin_token: str  # "" when not configured: see pygmy.cluster.credentials
    cluster_secret: str
    catalog_file: Path | None = None
    raft: RaftSettings = RaftSettings()
    frontend: FrontendSettings = FrontendSettings()
    cache: CacheSettings = CacheSettings()
    control: ControlSettings = ControlSettings()
    server: ServerSettings = ServerSettings()
    # Recorded by every Raft member at its first start, so a node never joins another cluster's group.
    cluster_id: str | None = None
    # Where the configuration came from, so child processes can be handed the same file.
    source: Path | None = None
    tls: TlsSettings = TlsSettings()

    def __post_init__(self) -> None:
        # Backends are called over https exactly when [tls] is on, whichever way the nodes were made.
        scheme = "https" if self.tls.enabled else "http"
        nodes = tuple(n if n.kind == "frontend" or n.scheme == scheme else dataclasses.replace(n, scheme=scheme)
                      for n in self.nodes)
        object.__setattr__(self, "nodes", nodes)

    # The address this process listens on, if not its node's host (PYGMY_BIND_HOST; a container's 0.0.0.0).
    bind_host: str | None = None

    def of_kind(self, kind: NodeKind) -> list[Node]:
        return sorted((n for n in self.nodes if n.kind == kind), key=lambda n: n.id)

    def node(self, kind: NodeKind, node_id: int) -> Node:
        for n in self.nodes:
            if n.kind == kind and n.id == node_id:
                return n
        raise ConfigError(f"no {kind} node with id {node_id} in the configuration")

    def node_dir(self, node: Node) -> Path:
        return self.data_dir / node.name

    def with_overrides(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def with_replicas(self, n: int) -> "Config":
        """The same frontends with exactly `n` catalog and `n` order replicas on 127.0.0.1.

        Replicas that exist keep their ports; new ones take the default pattern (catalog 8101+i / 9101+i,
        order 8201+i / 9201+i).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n % 2 == 0:
            raise ConfigError(
                f"the number of replicas must be odd and at least 1, not {n}: an even group survives no more "
                f"crashes than the odd group one smaller (both lose their majority at the same count), "
                f"it only adds load"
            )
        nodes = list(self.of_kind("frontend"))
        for kind in BACKEND_KINDS:
            existing = {node.id: node for node in self.of_kind(kind)}
            http_base, raft_base = DEFAULT_PORT_BASES[kind]
            for i in range(n):
                old = existing.get(i)
                if old is not None and i < len(existing):
                    nodes.append(dataclasses.replace(old, host="127.0.0.1"))
                else:
                    nodes.append(Node(kind, i, "127.0.0.1", http_base + i, raft_base + i))
        nodes_t = tuple(nodes)
        _check_unique(nodes_t)
        return dataclasses.replace(self, nodes=nodes_t)


def parse(
    text: str, *, base_dir: Path | None = None, source: Path | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """`env`: environment variables laid over the file (pygmy.config_env), as `load` does."""
    from pygmy.config_env import overlay

    try:
        raw = overlay(tomllib.loads(text), env or {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from exc
    base_dir = base_dir or Path.cwd()
    nodes = tuple(_parse_node(i, n) for i, n in enumerate(raw.get("nodes", [])))
    _check_unique(nodes)
    for kind in KINDS:
        if not any(n.kind == kind for n in nodes):
            raise ConfigError(f"the configuration needs at least one {kind} node")
    check_groups(nodes)
    data_dir = Path(values.string(raw.get("data_dir", "data"), "data_dir"))
    catalog_file = values.string(raw["catalog_file"], "catalog_file") if "catalog_file" in raw else None
    cluster_id = raw.get("cluster_id")
    if cluster_id is not None and (not isinstance(cluster_id, str) or not cluster_id):
        raise ConfigError("cluster_id must be a non-empty string")
    return Config(
        nodes=nodes,
        data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
        admin_token=_optional_str(raw, "admin_token"),
        cluster_secret=_optional_str(raw, "cluster_secret"),
        catalog_file=(base_dir / catalog_file) if catalog_file else None,
        raft=_parse_table("raft", RaftSettings, raw.get("raft", {})),
        frontend=_parse_table("frontend", FrontendSettings, raw.get("frontend", {})),
        cache=_parse_table("cache", CacheSettings, raw.get("cache", {})),
        control=_parse_table("control", ControlSettings, raw.get("control", {})),
        server=_parse_table("server", ServerSettings, raw.get("server", {})),
        cluster_id=cluster_id,
        source=source,
        tls=_parse_tls(raw.get("tls", {}), base_dir),
        bind_host=str(raw["bind_host"]) if raw.get("bind_host") else None,
    )


def check_groups(nodes: tuple[Node, ...]) -> None:
    """Every backend tier is a Raft group: an odd number of members, each with a Raft port."""
    for kind in BACKEND_KINDS:
        group = [n for n in nodes if n.kind == kind]
        if len(group) % 2 == 0:
            raise ConfigError(
                f"the {kind} tier has {len(group)} nodes; give it an odd number (1, 3, 5): an even group survives "
                f"no more crashes than the odd group one smaller, it only adds load"
            )
        for n in group:
            if n.raft_port is None:
                raise ConfigError(f"{n.name} needs a raft_port: its group's members talk to each other on it")


def load(path: str | Path | None = None) -> Config:
    """Load the configuration from `path`, or the built-in default (relative to the working directory),
    with the PYGMY_* environment variables of pygmy.config_env laid over it."""
    if path is None:
        return parse(DEFAULT_TOML, env=os.environ)
    p = Path(path).resolve()
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {p}: {exc.strerror}") from exc
    return parse(text, base_dir=p.parent, source=p, env=os.environ)


def dump(config: Config) -> str:
    """Render a configuration as TOML (used to hand an edited configuration to child processes).

    Paths are written absolute, so the file means the same wherever it is put.
    """
    doc: dict[str, Any] = {"data_dir": str(config.data_dir)}
    # An unset secret stays unset: the reader takes it from the data directory (pygmy.cluster.credentials).
    doc.update({key: getattr(config, key) for key in ("admin_token", "cluster_secret") if getattr(config, key)})
    if config.catalog_file:
        doc["catalog_file"] = str(config.catalog_file)
    if config.cluster_id is not None:
        doc["cluster_id"] = config.cluster_id
    doc["raft"] = dataclasses.asdict(config.raft)
    doc["frontend"] = dataclasses.asdict(config.frontend)
    if config.tls.enabled:
        doc["tls"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config.tls).items() if v is not None}
    doc["cache"] = dataclasses.asdict(config.cache)
    doc["control"] = dataclasses.asdict(config.control)
    doc["server"] = dataclasses.asdict(config.server)
    doc["nodes"] = [
        {k: v for k, v in dataclasses.asdict(n).items() if v is not None and k != "scheme"} for n in config.nodes
    ]
    return tomli_w.dumps(doc)


def _parse_table(name: str, settings: Any, raw: Any) -> Any:
    """A settings table (`[raft]`, `[frontend]`, `[cache]`, `[control]`, `[server]`) as its dataclass; unknown keys are refused by name."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{name} must be a table ([{name}])")
    known = {f.name for f in dataclasses.fields(settings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key in [{name}]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return settings(**raw)
def _parse_tls(raw: Any, base_dir: Path) -> TlsSettings:
    if not isinstance(raw, dict):
        raise ConfigError("tls must be a table ([tls])")
    unknown = sorted(set(raw) - {"enabled", "ca", "cert", "key"})
    if unknown:
        raise ConfigError(f"unknown key in [tls]: {', '.join(unknown)} (known: ca, cert, enabled, key)")
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"tls.enabled must be true or false, not {enabled!r}")
    paths = {}
    for key in ("ca", "cert", "key"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"tls.{key} must be the path of a PEM file")
        paths[key] = None if value is None else (base_dir / value)
    if any(paths.values()) and not all(paths.values()):
        raise ConfigError("[tls] needs all of ca, cert and key, or none of them (pygmy up then makes them)")
    return TlsSettings(enabled, **paths)
def _parse_node(position: int, raw: Any) -> Node:
    if not isinstance(raw, dict):
        raise ConfigError(f"nodes[{position}] must be a table")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"nodes[{position}].kind must be one of {', '.join(KINDS)}, not {kind!r}")
    where = f"nodes[{position}] ({kind})"
    for key in ("id", "port"):
        if key not in raw:
            raise ConfigError(f"{where} needs {key}")
    return Node(
        kind=kind,
        id=values.node_id(raw["id"], f"{where}.id"),
        host=values.host(raw.get("host", "127.0.0.1"), f"{where}.host"),
        port=values.port(raw["port"], f"{where}.port"),
        raft_port=values.port(raw["raft_port"], f"{where}.raft_port") if "raft_port" in raw else None,
    )


def _check_unique(nodes: tuple[Node, ...]) -> None:
    seen_ids: set[tuple[str, int]] = set()
    bound: list[tuple[str, int, str]] = []  # (host, port, which node's which key)
    for n in nodes:
        if (n.kind, n.id) in seen_ids:
            raise ConfigError(f"two nodes are named {n.name}")
        seen_ids.add((n.kind, n.id))
        for key, port in (("port", n.port), ("raft_port", n.raft_port)):
            if port is None:
                continue
            for host, other_port, other in bound:
                if other_port == port and values.same_socket(host, n.host):
                    raise ConfigError(f"{n.name}.{key} {n.host}:{port} is the same socket as {other} ({host}:{port})")
            bound.append((n.host, port, f"{n.name}.{key}"))


def _optional_str(raw: dict[str, Any], key: str) -> str:
    """A secret; "" when absent (`pygmy up` then generates it)."""
    value = raw.get(key, "")
    if not isinstance(value, str) or (key in raw and not value):
        raise ConfigError(f"{key} must be a non-empty string (or left out, to have `pygmy up` generate it)")
    return value
