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

if TYPE_CHECKING:
    from pygmy.raft.node import GroupOptions

NodeKind = Literal["frontend", "catalog", "order"]
KINDS: tuple[NodeKind, ...] = ("frontend", "catalog", "order")

DEFAULT_TOML = """\
# Pygmy cluster configuration. Every node of every tier, by kind and id.
data_dir = "data"
admin_token = "pygmy-admin"
cluster_secret = "pygmy-cluster-secret"

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


class ConfigError(ValueError):
    """The configuration file is missing, malformed or inconsistent."""


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
class Node:
    kind: NodeKind
    id: int
    host: str
    port: int
    raft_port: int | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.id}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class Config:
    nodes: tuple[Node, ...]
    data_dir: Path
    admin_token: str
    cluster_secret: str
    catalog_file: Path | None = None
    raft: RaftSettings = RaftSettings()
    # Recorded by every Raft member at its first start, so a node never joins another cluster's group.
    cluster_id: str | None = None
    # Where the configuration came from, so child processes can be handed the same file.
    source: Path | None = None
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
    data_dir = Path(str(raw.get("data_dir", "data")))
    catalog_file = raw.get("catalog_file")
    cluster_id = raw.get("cluster_id")
    if cluster_id is not None and (not isinstance(cluster_id, str) or not cluster_id):
        raise ConfigError("cluster_id must be a non-empty string")
    return Config(
        nodes=nodes,
        data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
        admin_token=_required_str(raw, "admin_token"),
        cluster_secret=_required_str(raw, "cluster_secret"),
        catalog_file=(base_dir / catalog_file) if catalog_file else None,
        raft=_parse_raft(raw.get("raft", {})),
        cluster_id=cluster_id,
        source=source,
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
    doc: dict[str, Any] = {
        "data_dir": str(config.data_dir),
        "admin_token": config.admin_token,
        "cluster_secret": config.cluster_secret,
    }
    if config.catalog_file:
        doc["catalog_file"] = str(config.catalog_file)
    if config.cluster_id is not None:
        doc["cluster_id"] = config.cluster_id
    doc["raft"] = dataclasses.asdict(config.raft)
    doc["nodes"] = [
        {k: v for k, v in dataclasses.asdict(n).items() if v is not None} for n in config.nodes
    ]
    return tomli_w.dumps(doc)


def _parse_raft(raw: Any) -> RaftSettings:
    if not isinstance(raw, dict):
        raise ConfigError("raft must be a table ([raft])")
    known = {f.name for f in dataclasses.fields(RaftSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key in [raft]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return RaftSettings(**raw)


def _parse_node(position: int, raw: Any) -> Node:
    if not isinstance(raw, dict):
        raise ConfigError(f"nodes[{position}] must be a table")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"nodes[{position}].kind must be one of {', '.join(KINDS)}, not {kind!r}")
    try:
        node = Node(
            kind=kind,
            id=int(raw["id"]),
            host=str(raw.get("host", "127.0.0.1")),
            port=int(raw["port"]),
            raft_port=int(raw["raft_port"]) if "raft_port" in raw else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"nodes[{position}] needs an integer id and port ({exc})") from exc
    if not 0 < node.port < 65536:
        raise ConfigError(f"nodes[{position}].port {node.port} is out of range")
    return node


def _check_unique(nodes: tuple[Node, ...]) -> None:
    seen_ids: set[tuple[str, int]] = set()
    seen_addrs: set[tuple[str, int]] = set()
    for n in nodes:
        if (n.kind, n.id) in seen_ids:
            raise ConfigError(f"two nodes are named {n.name}")
        for port in (n.port, n.raft_port):
            if port is None:
                continue
            if (n.host, port) in seen_addrs:
                raise ConfigError(f"{n.host}:{port} is used twice")
            seen_addrs.add((n.host, port))
        seen_ids.add((n.kind, n.id))


def _required_str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        variable = {"admin_token": "PYGMY_ADMIN_TOKEN", "cluster_secret": "PYGMY_CLUSTER_SECRET"}.get(key)
        where = f" (in the file, or the environment variable {variable})" if variable else ""
        raise ConfigError(f"{key} must be a non-empty string{where}")
    return value
