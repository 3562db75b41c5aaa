"""TLS between the nodes: a cluster with `[tls] enabled` serves end to end with its backends on HTTPS and
its Raft streams in TLS; plain HTTP, an untrusted client and a plain Raft peer get nothing from it."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest
import requests

from pygmy.common.tls import TlsContexts, client_context, generate
from pygmy.config import TlsSettings
from pygmy.raft.messages import Message, TimeoutNow
from pygmy.raft.transport import MAGIC, Transport
from support.cli import run_pygmy, succeeded
from support.cluster import Cluster, free_ports
from support.http import Api, ok_json

SECRET = "tls-test-cluster-secret"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    cluster = Cluster(tmp_path_factory.mktemp("tls"), tls=True).start()
    yield cluster
    cluster.stop()


def test_a_cluster_with_tls_serves_buys_and_passes_its_check(cluster: Cluster) -> None:
    api = Api(cluster.frontend_url)  # the public port stays plain HTTP
    order = ok_json(api.buy(2))
    assert order["item"] == 2 and api.stock(2) == 99
    assert cluster.catalog_url.startswith("https://")
    internal = requests.get(f"{cluster.catalog_url}/internal/books/2", headers=cluster.secret_headers(),
                            verify=cluster.verify, timeout=10)
    assert internal.ok and internal.json()["stock"] == 99
    # The operator tools reach every replica over TLS, trusting the configured CA.
    succeeded(run_pygmy("check", "--config", str(cluster.config_path)))
    assert all("https://" in cluster.log(f"{kind}-0") for kind in ("catalog", "order"))


def test_plain_http_to_a_tls_node_gets_no_answer(cluster: Cluster) -> None:
    plain = cluster.catalog_url.replace("https://", "http://")
    with pytest.raises(requests.RequestException):
        requests.get(f"{plain}/internal/health", headers=cluster.secret_headers(), timeout=5)


def test_a_client_that_does_not_trust_the_clusters_ca_is_refused(cluster: Cluster) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{cluster.catalog_url}/internal/health", headers=cluster.secret_headers(), timeout=5)


def test_a_plain_peer_on_a_tls_raft_port_never_sees_the_protocol(cluster: Cluster) -> None:
    with socket.create_connection(("127.0.0.1", cluster.node("catalog", 0).raft_port), timeout=5) as s:
        s.settimeout(1.0)
        try:
            greeting = s.recv(64)  # a plain Raft server would greet with MAGIC and a nonce at once
        except TimeoutError:
            greeting = b""
        assert not greeting.startswith(MAGIC)


def tls_pair(directory: Path) -> TlsContexts:
    generate(directory, ["127.0.0.1"])
    files = TlsSettings(True, directory / "ca.pem", directory / "node.pem", directory / "node.key")
    import ssl

    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.cert, files.key)  # type: ignore[arg-type]
    client = client_context(files)
    assert client is not None
    return TlsContexts(server, client)


async def test_raft_transports_talk_over_tls_and_a_plain_one_is_not_heard(tmp_path: Path) -> None:
    tls = tls_pair(tmp_path)
    ports = free_ports(3)
    addr = {i: ("127.0.0.1", p) for i, p in zip((1, 2, 3), ports)}
    got: list[Message] = []
    node_1 = Transport(1, addr[1], addr, SECRET, got.extend, tls=tls)
    node_2 = Transport(2, addr[2], addr, SECRET, lambda _: None, tls=tls)
    plain_3 = Transport(3, addr[3], addr, SECRET, lambda _: None)  # knows the secret, but speaks no TLS
    for t in (node_1, node_2, plain_3):
        await t.start()
    try:
        node_2.send(TimeoutNow(src=2, dst=1, term=5))
        plain_3.send(TimeoutNow(src=3, dst=1, term=6))
        node_2.flush()
        plain_3.flush()
        deadline = asyncio.get_running_loop().time() + 10
        while not got and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert got == [TimeoutNow(src=2, dst=1, term=5)]
    finally:
        for t in (node_1, node_2, plain_3):
            await t.close()


async def test_a_transport_closes_at_any_moment_of_its_peers_handshakes(tmp_path: Path) -> None:
    """close() cancels connects and handshakes wherever they are. (On 3.11 an asyncio.wait_for around a
    handshake that finishes as it is cancelled swallows the cancellation, and close() then waits forever:
    25 of 300 closes hung before the transport moved to asyncio.timeout.)"""
    tls = tls_pair(tmp_path)
    hung = 0
    for _ in range(120):
        addr = {i: ("127.0.0.1", p) for i, p in zip((1, 2, 3), free_ports(3))}
        nodes = [Transport(1, addr[1], addr, SECRET, lambda _: None, tls=tls),
                 Transport(2, addr[2], addr, SECRET, lambda _: None, tls=tls),
                 Transport(3, addr[3], addr, SECRET, lambda _: None)]
        for t in nodes:
            await t.start()
        nodes[1].send(TimeoutNow(src=2, dst=1, term=5))
        nodes[1].flush()
        await asyncio.sleep(random.uniform(0, 0.02))  # somewhere in the connects and handshakes
        try:
            async with asyncio.timeout(5):
                for t in nodes:
                    await t.close()
        except TimeoutError:
            hung += 1
    assert hung == 0, f"{hung} of 120 closes never finished"
