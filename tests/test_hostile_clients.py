"""Slow and abusive clients cannot starve a node: half-sent requests are cut off, a storm of connections
is held under a cap, and a well-behaved client that opens a new connection per request is served throughout.

`make test` runs a bounded sample (300 slowloris connections and a 2,000-connection storm against a cap of
1,000); `make test-hostile` runs the full attack of docs/hostile-clients.md (PYGMY_HOSTILE_FULL=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from support.cluster import LIVE, Cluster, running_cluster

FULL = os.environ.get("PYGMY_HOSTILE_FULL") == "1"
SLOWLORIS, STORM, SECONDS, CAP = (3000, 20_000, 40.0, 8000) if FULL else (300, 2000, 15.0, 1000)
HEADER_TIMEOUT = 2.0
# The attacker notices a close only when its own event loop gets round to it: with 23,000 connections in
# one process on a busy machine that lag reached ~20 s (docs/hostile-clients.md), so the full run allows it.
SLACK = 25.0 if FULL else 6.0
HOSTILE = Path(__file__).parent / "support" / "hostile.py"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory):
    server = {"header_timeout_s": HEADER_TIMEOUT, "keepalive_s": 30.0, "max_connections": CAP}
    with running_cluster(tmp_path_factory.mktemp("hostile"), replicas=1, server=server) as c:
        yield c


def _lookups_during(proc: subprocess.Popen[bytes], url: str, limit: int = 2000) -> tuple[int, list[str], float]:
    """Lookups, each on a new connection, until the attacker exits (bounded in count): ok, failures, worst s."""
    ok, failures, worst = 0, [], 0.0
    for _ in range(limit):
        if proc.poll() is not None:
            break
        start = time.monotonic()
        try:
            resp = requests.get(f"{url}/lookup/1", headers={"Connection": "close"}, timeout=15)
            if resp.status_code == 200:
                ok += 1
            else:
                failures.append(f"{resp.status_code} {resp.text[:100]}")
        except requests.RequestException as exc:
            failures.append(type(exc).__name__)
        worst = max(worst, time.monotonic() - start)
        time.sleep(0.1)
    return ok, failures, worst


def _attackers(port: int) -> list[subprocess.Popen[bytes]]:
    """The attack split over processes (one Python process cannot drive 20,000 sockets fast enough)."""
    procs = 4 if FULL else 1
    args = [sys.executable, str(HOSTILE), str(port), "--slowloris", str(SLOWLORIS // procs),
            "--storm", str(STORM // procs), "--seconds", str(SECONDS), "--drip", "0.5"]
    started = []
    for _ in range(procs):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        LIVE[proc.pid] = proc
        started.append(proc)
    return started


def _merge(reports: list[dict]) -> dict:
    merged: dict = {"opened": {}, "closed_by_server": {}}
    for r in reports:
        for key in ("opened", "closed_by_server"):
            for kind, n in r[key].items():
                merged[key][kind] = merged[key].get(kind, 0) + n
        for key in ("slowloris_longest_life_s", "slowloris_survived_longest_s", "seconds"):
            merged[key] = max(merged.get(key, 0.0), r[key])
        for key in ("connect_failed", "slowloris_survived"):
            merged[key] = merged.get(key, 0) + r[key]
    return merged


def test_lookups_keep_succeeding_during_slowloris_and_a_connection_storm(guarded: Cluster) -> None:
    procs = _attackers(guarded.node("frontend").port)
    outputs = []
    try:
        time.sleep(2.0)  # let the attack build up before the well-behaved client starts
        ok, failures, worst = _lookups_during(procs[0], guarded.frontend_url)
        for proc in procs:
            outputs.append(proc.communicate(timeout=SECONDS + 60))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            LIVE.pop(proc.pid, None)
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err.decode()[-2000:]
    report = _merge([json.loads(out) for out, _ in outputs])
    print(f"\nattack: {report}\nwell-behaved lookups: {ok} ok, {len(failures)} failed, slowest {worst:.2f} s")
    assert failures == [], failures[:10]
    assert ok >= 20
    # Every slowloris connection was cut off near its header deadline, never left to hold its socket.
    assert report["closed_by_server"]["slowloris"] >= SLOWLORIS
    assert report["slowloris_longest_life_s"] < HEADER_TIMEOUT + SLACK, report
    assert report["slowloris_survived_longest_s"] < HEADER_TIMEOUT + SLACK, report
    # The storm went over the cap: the server made room by closing the connections that held no request.
    assert report["closed_by_server"]["storm"] > 0, report
    metrics = requests.get(f"{guarded.frontend_url}/metrics", timeout=10).text
    open_now = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("pygmy_connections_open"))
    assert open_now <= CAP
    log = guarded.log("frontend-0")
    assert "did not finish their request headers" in log
