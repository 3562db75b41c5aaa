"""The status document (the frontend's `GET /health`) as an operator reads it: one row per node, like
`etcdctl endpoint status -w table`, each group's leader highlighted, and a line per group."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

COLUMNS = ("node", "url", "status", "role", "term", "leader", "commit", "applied", "last contact", "restarts")
STATUS_STYLE = {"up": "green", "down": "red", "failed": "bold red"}
OVERALL_STYLE = {"ok": "green", "degraded": "yellow", "unavailable": "bold red"}


def status_view(document: dict[str, Any]) -> RenderableType:
    """The table and the per-group lines for one status document."""
    overall = str(document.get("status", "?"))
    table = Table(title=Text(f"Cluster: {overall}", style=OVERALL_STYLE.get(overall, "")))
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("term", "commit", "applied", "last contact", "restarts") else "left")
    for node in document.get("nodes", []):
        if isinstance(node, dict):
            table.add_row(*_cells(node), style="bold" if node.get("role") == "leader" else None)
    lines = [Text(group_line(kind, group)) for kind, group in (document.get("groups") or {}).items() if isinstance(group, dict)]
    return Group(table, *lines)


def group_line(kind: str, group: dict[str, Any]) -> str:
    """"catalog: leader catalog-1, term 7, 3/3 up" (or what is missing)."""
    leader = group.get("leader")
    head = f"leader {leader}" if leader else "[no leader]"
    quorum = "" if group.get("quorum", True) else ", no quorum"
    return f"{kind}: {head}, term {group.get('term', 0)}, {group.get('up', 0)}/{group.get('replicas', 0)} up{quorum}"


def _cells(node: dict[str, Any]) -> list[str | Text]:
    status = str(node.get("status", "?"))
    role = node.get("role")
    name = str(node.get("name") or f"{node.get('kind', '?')}-{node.get('id', '?')}")
    contact = node.get("last_contact")
    return [
        name,
        str(node.get("url", "")),
        Text(status, style=STATUS_STYLE.get(status, "")),
        _text(role),
        _text(node.get("term")),
        _text(node.get("leader")),
        _text(node.get("commit")),
        _text(node.get("applied")),
        "" if contact is None else f"{contact:.3f} s",
        _text(node.get("restarts")),
    ]


def _text(value: Any) -> str:
    return "" if value is None else str(value)
