"""The status document (the frontend's `GET /health`) as an operator reads it: one row per node, like
`etcdctl endpoint status -w table`, each group's leader highlighted, a line per group; with the answering
frontend's own view in two more columns (each replica's last heartbeat, whether it restarted since the
frontend started) and a line for its cache."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

# (heading, key in a node's entry); the first three always show, the others when any node reports them.
COLUMNS = (("node", "name"), ("url", "url"), ("status", "status"), ("role", "role"), ("term", "term"),
           ("leader", "leader"), ("commit", "commit"), ("applied", "applied"), ("contact", "last_contact"),
           ("restarts", "restarts"), ("heartbeat", "heartbeat_age"), ("restarted", "restarted"))
NUMERIC = {"term", "commit", "applied", "last_contact", "restarts", "heartbeat_age"}
STATUS_STYLE = {"up": "green", "down": "red", "failed": "bold red"}
OVERALL_STYLE = {"ok": "green", "degraded": "yellow", "unavailable": "bold red"}


def status_view(document: dict[str, Any], width: int | None = None) -> RenderableType:
    """The table and the per-group lines for one status document; on a console narrower than `width`
    would need, the URL column is left out rather than cutting names and numbers."""
    overall = str(document.get("status", "?"))
    nodes = _with_frontend_view(document)
    columns = [(h, k) for i, (h, k) in enumerate(COLUMNS) if i < 3 or any(k in n for n in nodes)]
    table = Table(title=Text(f"Cluster: {overall}", style=OVERALL_STYLE.get(overall, "")))
    rows = [_cells(node) for node in nodes]
    if width is not None and _needed(columns, rows) > width:
        columns = [(h, k) for h, k in columns if k != "url"]
    for heading, key in columns:
        # Every column but the URL keeps its width on a narrow terminal (a cut name or role misleads); the URL folds.
        width = max([len(heading)] + [len(str(row[key])) for row in rows]) if key != "url" else None
        table.add_column(heading, justify="right" if key in NUMERIC else "left", min_width=width,
                         overflow="fold" if key == "url" else "ellipsis", no_wrap=key != "url")
    for node, cells in zip(nodes, rows):
        table.add_row(*(cells[key] for _, key in columns), style="bold" if node.get("role") == "leader" else None)
    lines = [Text(group_line(kind, group)) for kind, group in (document.get("groups") or {}).items() if isinstance(group, dict)]
    frontend = document.get("frontend")
    if isinstance(frontend, dict):
        lines.append(Text(f"cache: {cache_line(frontend.get('cache'))}"))
    return Group(table, *lines)


def cache_line(cache: Any) -> str:
    """The cache's status as `key value` pairs, or why there is none."""
    if not isinstance(cache, dict):
        return "off (this frontend runs no cache)"
    return ", ".join(f"{key} {value}" for key, value in cache.items())


def _with_frontend_view(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each node's entry, with the answering frontend's view of it (last heartbeat's age, whether it
    restarted since the frontend started) where the document has one."""
    frontend = document.get("frontend")
    rows = frontend.get("replicas") if isinstance(frontend, dict) else None
    seen = {r.get("name"): r for r in rows or [] if isinstance(r, dict)}
    nodes = []
    for node in document.get("nodes", []):
        if not isinstance(node, dict):
            continue
        view = seen.get(node.get("name"))
        if view is not None:
            restarts = view.get("restarts_seen") or 0
            node = {**node, "heartbeat_age": view.get("heartbeat_age"), "restarted": f"yes ({restarts}x)" if restarts else "no"}
        nodes.append(node)
    return nodes


def _needed(columns: list[tuple[str, str]], rows: list[dict[str, str | Text]]) -> int:
    """Characters a table of these columns takes: each column's widest cell, plus padding and borders."""
    return 1 + sum(3 + max([len(h)] + [len(str(row[k])) for row in rows]) for h, k in columns)


def group_line(kind: str, group: dict[str, Any]) -> str:
    """"catalog: leader catalog-1, term 7, 3/3 up" (or what is missing)."""
    leader = group.get("leader")
    head = f"leader {leader}" if leader else "[no leader]"
    quorum = "" if group.get("quorum", True) else ", no quorum"
    return f"{kind}: {head}, term {group.get('term', 0)}, {group.get('up', 0)}/{group.get('replicas', 0)} up{quorum}"


def _cells(node: dict[str, Any]) -> dict[str, str | Text]:
    status = str(node.get("status", "?"))
    contact = node.get("last_contact")
    cells: dict[str, str | Text] = {key: _text(node.get(key)) for _, key in COLUMNS}
    cells["name"] = str(node.get("name") or f"{node.get('kind', '?')}-{node.get('id', '?')}")
    cells["status"] = Text(status, style=STATUS_STYLE.get(status, ""))
    cells["last_contact"] = f"{contact:.3f} s" if isinstance(contact, (int, float)) else ""
    age = node.get("heartbeat_age")
    cells["heartbeat_age"] = f"{age:.1f} s ago" if isinstance(age, (int, float)) else ("never" if "heartbeat_age" in node else "")
    return cells


def _text(value: Any) -> str:
    return "" if value is None else str(value)
