"""Reaching the backend replicas directly, as an operator tool does: addresses and secret from the config.

The frontend hides which replica answers; `pygmy check` and `pygmy backup` need the opposite: ask each
replica by name, and tell a replica that is down from one that answers wrongly.
"""

from __future__ import annotations

from typing import Any

from pygmy.common.tier_client import Reply, TierClient, TierUnavailable
from pygmy.common.tls import client_context
from pygmy.config import Config, Node, NodeKind
from pygmy.replica.client import GroupClient, error_message

GROUPS: tuple[NodeKind, ...] = ("catalog", "order")


class OpsError(Exception):
    """An operator command cannot go on (no replica of a group answers, a backup is unreadable...)."""


class Backends:
    """The catalog and order replicas of one configuration, over one HTTP client pool."""

    def __init__(self, config: Config, *, timeout: float = 10.0) -> None:
        self.config = config
        self.tiers = TierClient(config.cluster_secret, timeout=timeout, ssl=client_context(config.tls))

    def replicas(self, kind: NodeKind) -> list[Node]:
        return self.config.of_kind(kind)

    async def call(self, node: Node, method: str, path: str, *, params: dict[str, str] | None = None,
                   timeout: float | None = None) -> Reply:
        """One replica's answer; TierUnavailable if it does not answer at all."""
        return await self.tiers.call(method, node.url + path, params=params, timeout=timeout)

    async def first(self, kind: NodeKind, method: str, path: str, *, params: dict[str, str] | None = None,
                    deadline: float = 10.0) -> tuple[str, Any]:
        """The name of the replica that answered 200, and its body: any replica will do (a follower forwards
        to its leader), the group's client fails over and waits out elections; OpsError otherwise."""
        group = GroupClient(self.tiers, [n.url for n in self.replicas(kind)], deadline=deadline)
        try:
            reply = await group.call(method, path, params=params, idempotent=True)
        except TierUnavailable as exc:
            raise OpsError(f"no {kind} replica answered {method} {path}: {exc}") from None
        if reply.status != 200:
            raise OpsError(f"{kind} answered {method} {path} with {reply.status}: {error_message(reply.body)}")
        return reply.headers.get("X-Pygmy-Served-By", kind), reply.body

    async def close(self) -> None:
        await self.tiers.close()
