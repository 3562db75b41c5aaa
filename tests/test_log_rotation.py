"""`pygmy up` rotates each node's log file by size: a client that makes a node log fast cannot fill the disk."""

from __future__ import annotations

from typing import Callable

import pytest
import requests

from support.cluster import Cluster

MAX_BYTES = 20_000


def test_a_node_log_is_rotated_at_its_size_limit(make_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGMY_LOG_MAX_BYTES", str(MAX_BYTES))
    c = make_cluster(mode="up", replicas=1)
    url = c.frontend_url
    headers = {"Authorization": f"Bearer {c.admin_token}", "Content-Encoding": "gzip", "Connection": "close"}
    for _ in range(300):  # each is refused with 400 and logged in one line (~150 bytes)
        assert requests.post(f"{url}/admin/books/1", data=b"not gzip", headers=headers, timeout=15).status_code == 400
    logs = c.data_dir / "logs"
    current, rotated = logs / "frontend-0.log", logs / "frontend-0.log.1"
    assert rotated.exists(), sorted(p.name for p in logs.iterdir())
    assert current.stat().st_size <= MAX_BYTES
    assert rotated.stat().st_size <= MAX_BYTES + 1000
    assert "unreadable request body" in current.read_text() + rotated.read_text()
