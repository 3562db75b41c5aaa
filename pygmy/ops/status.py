"""The status document (the frontend's `GET /health`) as an operator reads it: one row per node, like
`etcdctl endpoint status -w table`, each group's leader highlighted, a line per group, and the answering
frontend's own view: each replica's last heartbeat, whether it restarted since the frontend started, the cache."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

# (heading, key in a node's entry); the first three always show, the others when any node reports them.
COLUMNS = (("node", "name"), ("url", "url"), ("status", "status"), ("role", "role"), ("term", "term"),
           ("leader", "leader"), ("commit", "commit"), ("applied", "applied"), ("contact", "last_contact"),
           ("restarts", "restarts"))
NUMERIC = {"term", "commit", "applied", "last_contact", "restarts"}
STATUS_STYLE = {"up": "green", "down": "red", "failed": "bold red"}
OVERALL_STYLE = {"ok": "green", "degraded": "yellow", "unavailable": "bold red"}


def status_view(document: dict[str, Any], width: int | None = None) -> RenderableType:
    """The table and the per-group lines for one status document; on a console narrower than `width`
    would need, the URL column is left out rather than cutting names and numbers."""
    overall = str(document.get("status", "?"))
    nodes = [n for n in document.get("nodes", []) if isinstance(n, dict)]
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
    return Group(table, *lines, *(frontend_view(frontend) if isinstance(frontend, dict) else []))


def frontend_view(frontend: dict[str, Any]) -> list[RenderableType]:
    """The answering frontend's rows: per replica its heartbeat's age and whether it came back from a crash."""
    table = Table(title="Frontend's view of the replicas")
    for heading in ("replica", "status", "last heartbeat", "restarted"):
        table.add_column(heading, justify="right" if heading == "last heartbeat" else "left", no_wrap=True)
    for row in frontend.get("replicas") or []:
        if not isinstance(row, dict):
            continue
        status = str(row.get("status", "?"))
        age = row.get("heartbeat_age")
        restarts = row.get("restarts_seen") or 0
        table.add_row(str(row.get("name", "?")), Text(status, style=STATUS_STYLE.get(status, "")),
                      f"{age:.1f} s ago" if isinstance(age, (int, float)) else "never",
                      f"yes ({restarts}x)" if restarts else "no")
    cache = frontend.get("cache")
    return [table, Text(f"cache: {cache_line(cache)}")]


def cache_line(cache: Any) -> str:
    """The cache's status as `key value` pairs, or why there is none."""
    if not isinstance(cache, dict):
        return "off (this frontend runs no cache)"
    return ", ".join(f"{key} {value}" for key, value in cache.items())


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
    return cells


def _text(value: Any) -> str:
    return "" if value is None else str(value)
