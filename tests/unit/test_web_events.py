"""The dashboard's recent events: sentences for what changed between two status documents."""

from __future__ import annotations

from typing import Any

from pygmy.web.events import events_between


def node(name: str, status: str = "up", role: str | None = "follower", term: int = 3, **more: Any) -> dict[str, Any]:
    kind = name.split("-")[0]
    return {"name": name, "kind": kind, "status": status, "role": role, "term": term, "applied": 10,
            "snapshot_index": 0, "restarts": 0, **more}


def doc(*nodes: dict[str, Any], leader: str | None = "catalog-0", term: int = 3) -> dict[str, Any]:
    return {"groups": {"catalog": {"leader": leader, "term": term}}, "nodes": list(nodes)}


def test_the_first_document_names_each_groups_leader() -> None:
    assert events_between(None, doc(node("catalog-0", role="leader"))) == ["catalog-0 is the catalog leader in term 3"]


def test_a_crash_and_the_election_after_it() -> None:
    before = doc(node("catalog-0", role="leader"), node("catalog-1"))
    during = doc(node("catalog-0", "down", None), node("catalog-1", role="candidate", term=4), leader=None, term=4)
    after = doc(node("catalog-0", "down", None), node("catalog-1", role="leader", term=4), leader="catalog-1", term=4)
    assert events_between(before, during) == ["catalog-0 down", "the catalog group has no leader"]
    assert events_between(during, after) == ["catalog-1 elected leader in term 4"]


def test_a_node_back_up_after_its_supervisor_restarted_it() -> None:
    down = doc(node("catalog-0", "down", None))
    back = doc(node("catalog-0", restarts=1))
    assert events_between(down, back) == ["catalog-0 back up", "catalog-0 restarted by its supervisor (restart 1)"]


def test_a_restart_quicker_than_a_sample_still_says_the_node_was_down() -> None:
    before = doc(node("catalog-0"))
    after = doc(node("catalog-0", restarts=1))
    assert events_between(before, after) == ["catalog-0 down and back: restarted by its supervisor (restart 1)"]


def test_a_snapshot_past_what_the_node_applied_was_sent_by_the_leader() -> None:
    behind = doc(node("catalog-2", applied=5))
    rebuilt = doc(node("catalog-2", applied=900, snapshot_index=800))
    assert events_between(behind, rebuilt) == ["catalog-2 rebuilt from a snapshot at index 800"]
    own = doc(node("catalog-2", applied=1200, snapshot_index=1000))
    assert events_between(doc(node("catalog-2", applied=1100)), own) == []  # its own snapshot: no news


def test_nothing_changed_means_no_event() -> None:
    same = doc(node("catalog-0", role="leader"), node("catalog-1"))
    assert events_between(same, same) == []
