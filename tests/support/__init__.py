"""Helpers the tests share: real clusters as processes, Raft groups of member processes (also driven by
benchmarks/raft_bench.py), HTTP and CLI helpers, catalog files."""
