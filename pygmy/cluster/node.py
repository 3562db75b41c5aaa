"""Running one node of the cluster in this process: what `pygmy serve KIND ID` does."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

from aiohttp import web

from pygmy.cluster.dirlock import DirectoryInUse, lock_directory
from pygmy.cluster.credentials import private_umask
from pygmy.cluster.parent import die_with_parent
from pygmy.common.server import configure_logging, serve
from pygmy.common.tls import contexts
from pygmy.config import Config, NodeKind
from pygmy.raft.storage import StorageCorrupt

# EX_CONFIG from sysexits.h: the supervisor (`pygmy up`) reads it as "do not restart: the disk needs a human".
# Also the status of a node whose directory another process holds: restarting would be refused the same way.
EXIT_DAMAGED_STORAGE = 78

log = logging.getLogger(__name__)


def run_node(config: Config, kind: NodeKind, node_id: int, *, join: bool = False) -> None:
    """Serve one node until SIGINT/SIGTERM.

    `join`: this node's data directory was lost; it rejoins the existing cluster as a non-voter until it
    has caught up, instead of bootstrapping a group of its own.
    """
    node = config.node(kind, node_id)
    private_umask()  # its databases and Raft files are its owner's only
    configure_logging(node.name)
    die_with_parent()
    if kind != "frontend":  # a frontend keeps nothing on disk
        take_directory(node.name, config.node_dir(node))

    async def factory() -> web.Application:
        if kind == "catalog":
            from pygmy.catalog.app import create_app as catalog_app

            return await catalog_app(config, node, join=join)
        if kind == "order":
            from pygmy.order.app import create_app as order_app

            return await order_app(config, node, join=join)
        from pygmy.frontend.app import create_app as frontend_app

        return await frontend_app(config, node)

    tls = contexts(config) if kind != "frontend" else None  # the public port stays plain HTTP (docs/security.md)
    ssl_context = tls.server if tls else None
    exit_if_storage_damaged(lambda: serve(factory, config.bind_host or node.host, node.port, node.name, ssl_context, config.server),
                            node.name, str(config.node_dir(node)))


def take_directory(name: str, directory: Path) -> None:
    """Lock the node's directory for this process's lifetime; if another process holds it, exit 78."""
    try:
        lock_directory(directory, name)
    except DirectoryInUse as exc:
        log.error("%s refuses to start: %s", name, exc)
        sys.exit(EXIT_DAMAGED_STORAGE)


def exit_if_storage_damaged(run: Callable[[], None], name: str, directory: str) -> None:
    """Run `run`; if it stops on damaged storage, say so in one line and exit 78 without a traceback.

    Restarting would only fail the same way again, so the exit status tells the supervisor to leave it.
    """
    try:
        run()
    except BaseException as exc:
        damage = _storage_damage(exc)
        if damage is None:
            raise
        log.error("%s: its storage in %s is damaged (%s); wipe the directory to have it rebuilt from its peers", name, directory, damage)
        sys.exit(EXIT_DAMAGED_STORAGE)


def _storage_damage(exc: BaseException | None, depth: int = 0) -> StorageCorrupt | None:
    """The StorageCorrupt behind `exc`, looking into exception groups and causes (a task group wraps it)."""
    if exc is None or depth > 10:
        return None
    if isinstance(exc, StorageCorrupt):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _storage_damage(inner, depth + 1)) is not None:
                return found
    return _storage_damage(exc.__cause__, depth + 1)
