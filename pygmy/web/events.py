"""Recent events as sentences, derived from two consecutive status documents (docs/contracts.md).

The dashboard shows what changed, not every field: a node going down or coming back, a new leader and
its term, a node that restarted, one rebuilt from a snapshot, one catching up after losing its disk.
"""

from __future__ import annotations

from typing import Any

Node = dict[str, Any]


def _by_name(status: dict[str, Any] | None) -> dict[str, Node]:
    return {n["name"]: n for n in (status or {}).get("nodes", [])}


def events_between(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """Sentences for what changed from `before` to `after`; on the first document, who leads each group."""
    if before is None:
        return [
            f"{group['leader']} is the {kind} leader in term {group['term']}"
            for kind, group in after.get("groups", {}).items()
            if group.get("leader")
        ]
    old = _by_name(before)
    sentences: list[str] = []
    for name, node in _by_name(after).items():
        sentences += _node_events(name, old.get(name), node)
    for kind, group in after.get("groups", {}).items():
        previous = before.get("groups", {}).get(kind, {})
        if previous.get("leader") and not group.get("leader"):
            sentences.append(f"the {kind} group has no leader")
    return sentences


def _node_events(name: str, old: Node | None, new: Node) -> list[str]:
    if old is None:
        return []
    sentences: list[str] = []
    was_up, is_up = old.get("status") == "up", new.get("status") == "up"
    if was_up and not is_up:
        sentences.append(f"{name} {new.get('status', 'down')}")
    elif is_up and not was_up:
        sentences.append(f"{name} back up")
    if not is_up:
        return sentences
    if (new.get("restarts") or 0) > (old.get("restarts") or 0):
        # Up in both samples but restarted: it was down in between, for less than a sample.
        gap = "down and back: " if was_up else ""
        sentences.append(f"{name} {gap}restarted by its supervisor (restart {new['restarts']})")
    if new.get("role") == "leader" and (old.get("role") != "leader" or new.get("term") != old.get("term")):
        sentences.append(f"{name} elected leader in term {new.get('term')}")
    elif old.get("role") == "leader" and new.get("role") != "leader" and was_up:
        sentences.append(f"{name} stepped down (now {new.get('role')}, term {new.get('term')})")
    if new.get("role") == "catching-up" and old.get("role") != "catching-up":
        sentences.append(f"{name} is catching up (it lost its log and rejoins without a vote)")
    sentences += _snapshot_event(name, old, new)
    return sentences


def _snapshot_event(name: str, old: Node, new: Node) -> list[str]:
    # A snapshot past what the node had applied cannot be its own: the leader sent it (InstallSnapshot).
    snapshot = new.get("snapshot_index") or 0
    if snapshot > (old.get("snapshot_index") or 0) and snapshot > (old.get("applied") or 0) and old.get("status") == "up":
        return [f"{name} rebuilt from a snapshot at index {snapshot}"]
    return []
