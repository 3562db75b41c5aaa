"""Reaching the backend replicas directly, as an operator tool does: addresses and secret from the config.

The frontend hides which replica answers; `pygmy check` and `pygmy backup` need the opposite: ask each
replica by name, and tell a replica that is down from one that answers wrongly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pygmy.common.tier_client import Reply, TierClient, TierUnavailable
from pygmy.config import Config, Node, NodeKind

GROUPS: tuple[NodeKind, ...] = ("catalog", "order")


class OpsError(Exception):
    """An operator command cannot go on (no replica of a group answers, a backup is unreadable...)."""


class Backends:
    """The catalog and order replicas of one configuration, over one HTTP client pool."""

    def __init__(self, config: Config, *, timeout: float = 10.0) -> None:
        self.config = config
        self.tiers = TierClient(config.cluster_secret, timeout=timeout)

    def replicas(self, kind: NodeKind) -> list[Node]:
        return self.config.of_kind(kind)

    async def call(self, node: Node, method: str, path: str, *, params: dict[str, str] | None = None,
                   timeout: float | None = None) -> Reply:
        """One replica's answer; TierUnavailable if it does not answer at all."""
        return await self.tiers.call(method, node.url + path, params=params, timeout=timeout)

    async def first(self, kind: NodeKind, method: str, path: str, *, params: dict[str, str] | None = None,
                    deadline: float = 10.0) -> tuple[Node, Any]:
        """The first replica of `kind` to answer 200, and its body; a replica forwards to its leader, so
        any one will do. Retried (elections take a moment) until `deadline`; OpsError after."""
        end = asyncio.get_running_loop().time() + deadline
        problems: dict[str, str] = {}
        while True:
            for node in self.replicas(kind):
                try:
                    reply = await self.call(node, method, path, params=params)
                except TierUnavailable as exc:
                    problems[node.name] = str(exc)
                    continue
                if reply.status == 200:
                    return node, reply.body
                problems[node.name] = f"answered {reply.status}: {error_message(reply.body)}"
            if asyncio.get_running_loop().time() >= end:
                detail = "; ".join(f"{name}: {why}" for name, why in problems.items())
                raise OpsError(f"no {kind} replica answered {method} {path}: {detail}")
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.tiers.close()


def error_message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message")) if isinstance(error, dict) else str(body)[:200]
