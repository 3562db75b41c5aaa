"""Public liveness and readiness probes: answers for an orchestrator that reveal nothing about the cluster.

`/livez` says only that the process's event loop answers (a restart would not help otherwise); `/readyz`
says whether this node should be sent traffic now, each tier deciding what "ready" means. Neither needs
a secret, so neither names a node, an index or a term: a 200 with `{"status": ...}` or a 503 JSON error.
"""

from __future__ import annotations

from aiohttp import web

from pygmy.common.errors import unavailable
from pygmy.common.jsonio import json_response

# An orchestrator's probe gives up after a second by default; a readiness check answers before that.
READY_BUDGET = 0.8


async def livez(_: web.Request) -> web.Response:
    return json_response({"status": "alive"})


def ready() -> web.Response:
    return json_response({"status": "ready"})


def not_ready(reason: str) -> Exception:
    """503 `not_ready` with a reason in words that names no node (e.g. "no leader is known")."""
    return unavailable(f"not ready: {reason}", code="not_ready")
