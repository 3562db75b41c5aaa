"""Cluster configuration: every node (kind, id, host, port), the data directory and the secrets.

One TOML file plays the part of the reference design's `sv_info.py`. Without a file, the built-in
default puts everything on 127.0.0.1 with the frontend at http://127.0.0.1:8080 and three replicas
per backend tier.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Literal

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


class ConfigError(ValueError):
    """The configuration file is missing, malformed or inconsistent."""


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
    # Where the configuration came from, so child processes can be handed the same file.
    source: Path | None = None

    def of_kind(self, kind: NodeKind) -> list[Node]:
        return sorted((n for n in self.nodes if n.kind == kind), key=lambda n: n.id)

    def node(self, kind: NodeKind, node_id: int) -> Node:
        for n in self.nodes:
            if n.kind == kind and n.id == node_id:
                return n
        raise ConfigError(f"no {kind} node with id {node_id} in the configuration")

    def serving(self, kind: NodeKind) -> Node:
        """The replica of a backend tier that serves requests.

        Until the tiers run on consensus, only the lowest-id replica of each backend tier serves;
        the others are listed so that the configuration already describes the replicated cluster.
        """
        nodes = self.of_kind(kind)
        if not nodes:
            raise ConfigError(f"the configuration has no {kind} node")
        return nodes[0]

    def node_dir(self, node: Node) -> Path:
        return self.data_dir / node.name

    def with_overrides(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def parse(text: str, *, base_dir: Path | None = None, source: Path | None = None) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from exc
    base_dir = base_dir or Path.cwd()
    nodes = tuple(_parse_node(i, n) for i, n in enumerate(raw.get("nodes", [])))
    _check_unique(nodes)
    for kind in KINDS:
        if not any(n.kind == kind for n in nodes):
            raise ConfigError(f"the configuration needs at least one {kind} node")
    data_dir = Path(str(raw.get("data_dir", "data")))
    catalog_file = raw.get("catalog_file")
    return Config(
        nodes=nodes,
        data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
        admin_token=_required_str(raw, "admin_token"),
        cluster_secret=_required_str(raw, "cluster_secret"),
        catalog_file=(base_dir / catalog_file) if catalog_file else None,
        source=source,
    )


def load(path: str | Path | None = None) -> Config:
    """Load the configuration from `path`, or the built-in default (relative to the working directory)."""
    if path is None:
        return parse(DEFAULT_TOML)
    p = Path(path).resolve()
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {p}: {exc.strerror}") from exc
    return parse(text, base_dir=p.parent, source=p)


def dump(config: Config) -> str:
    """Render a configuration as TOML (used to hand an edited configuration to child processes)."""
    lines = [
        f'data_dir = "{config.data_dir}"',
        f'admin_token = "{config.admin_token}"',
        f'cluster_secret = "{config.cluster_secret}"',
    ]
    if config.catalog_file:
        lines.append(f'catalog_file = "{config.catalog_file}"')
    for n in config.nodes:
        lines += ["", "[[nodes]]", f'kind = "{n.kind}"', f"id = {n.id}", f'host = "{n.host}"', f"port = {n.port}"]
        if n.raft_port is not None:
            lines.append(f"raft_port = {n.raft_port}")
    return "\n".join(lines) + "\n"


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
        raise ConfigError(f"{key} must be a non-empty string")
    return value
