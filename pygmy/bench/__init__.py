"""`pygmy bench`: the experiments users run against a cluster (latency, invalidation, throughput, failover,
scale), each writing CSV, JSON and PNG figures into a results folder (docs/RESULTS.md)."""
