"""A node configured the way a container is: secrets and its listening address from environment variables.

In a container a node listens on 0.0.0.0 while its peers know it by a DNS name or a static address; the
secrets come from the orchestrator, never from the image. Here the file says 127.0.0.1 and the
environment says 0.0.0.0, so the node must answer on another loopback address too (127.0.0.2).
"""

from __future__ import annotations

import socket
from pathlib import Path

import requests

from support.cluster import Cluster

ENV_TOKEN = "token-from-the-environment"


def accepts(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2.0)
        return s.connect_ex((host, port)) == 0


def test_variables_set_the_listen_address_and_the_admin_token(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "env", replicas=1, all_env={"PYGMY_BIND_HOST": "0.0.0.0", "PYGMY_ADMIN_TOKEN": ENV_TOKEN})
    cluster.start()
    try:
        for node in cluster.serving_nodes():
            assert accepts("127.0.0.2", node.port), f"{node.name} HTTP does not listen on 0.0.0.0"
            if node.raft_port:
                assert accepts("127.0.0.2", node.raft_port), f"{node.name} Raft does not listen on 0.0.0.0"
        update = cluster.frontend_url.replace("127.0.0.1", "127.0.0.2") + "/admin/books/1"
        body = {"stock_delta": 1}
        with_file_token = requests.post(update, json=body, headers=cluster.admin_headers(), timeout=15)
        assert with_file_token.status_code == 403, with_file_token.text
        with_env_token = requests.post(update, json=body, headers={"Authorization": f"Bearer {ENV_TOKEN}"}, timeout=15)
        assert with_env_token.status_code == 200, with_env_token.text
    finally:
        cluster.stop()
