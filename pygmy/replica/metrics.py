"""A backend replica's Prometheus metrics: its Raft state (role, term, commit, applied, last index), the
leader changes it saw, proposals committed and failed, how long its fsynced saves take, and (order tier)
the orders still pending. Gauges are read at scrape time from the replica itself, so they are never stale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pygmy.replica.group import Replica

ROLES = ("leader", "follower", "candidate", "catching-up", "failed")

LEADER_CHANGES = Counter("pygmy_raft_leader_changes_total", "Times this replica saw its group's leader change", ["tier", "node"])
PROPOSALS = Counter("pygmy_raft_proposals_total", "Commands proposed on this replica, by outcome", ["tier", "node", "outcome"])
DURABLE_WRITE = Histogram(
    "pygmy_raft_fsync_seconds",
    "Time of one durable (fsynced) save of the Raft log and hard state",
    ["tier", "node"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


GAUGES = (("term", "Current Raft term"), ("commit", "Highest log index known committed"),
          ("applied", "Highest log index applied to the state machine"), ("last_index", "Last index in the log"))


class ReplicaCollector(Collector):
    """The gauges of the replicas of this process (one, when served), computed when Prometheus scrapes."""

    def __init__(self) -> None:
        self.replicas: list["Replica"] = []

    def collect(self) -> Iterator[Metric]:
        role = GaugeMetricFamily("pygmy_raft_role", "1 for this replica's current role, 0 for the others", labels=["tier", "node", "role"])
        gauges = {key: GaugeMetricFamily(f"pygmy_raft_{key}", text, labels=["tier", "node"]) for key, text in GAUGES}
        pending = GaugeMetricFamily("pygmy_orders_pending", "Orders begun and not yet settled (as this replica has applied)", labels=["tier", "node"])
        for replica in self.replicas:
            labels = [replica.node.kind, replica.node.name]
            status = replica.status_document(0)
            for name in ROLES:
                role.add_metric([*labels, name], 1.0 if status["role"] == name else 0.0)
            for key, gauge in gauges.items():
                gauge.add_metric(labels, float(status[key] or 0))
            if replica.node.kind == "order":
                pending.add_metric(labels, float(_pending(replica)))
        yield role
        yield from gauges.values()
        yield pending


COLLECTOR = ReplicaCollector()
REGISTRY.register(COLLECTOR)


def _pending(replica: "Replica") -> int:
    try:
        return int(replica.read_local({"op": "ledger"}).get("pending", 0))
    except Exception:  # a replica that is loading or stopping: no figure rather than a failed scrape
        return 0


def watch(replica: "Replica") -> None:
    """Publish `replica`'s metrics (one replica per process: the node's own registry)."""
    COLLECTOR.replicas.append(replica)
    histogram = DURABLE_WRITE.labels(replica.node.kind, replica.node.name)
    replica.group.on_durable_write = histogram.observe


def proposal(replica: "Replica", outcome: str) -> None:
    PROPOSALS.labels(replica.node.kind, replica.node.name, outcome).inc()


def leader_changed(replica: "Replica") -> None:
    LEADER_CHANGES.labels(replica.node.kind, replica.node.name).inc()
