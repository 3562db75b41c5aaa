"""The rules a node's HTTP server applies to every connection (pygmy/common/connections.py), one by one,
on a real frontend with small bounds: header deadline, idle keep-alive timeout, and the connection cap.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Iterator

import pytest

from support.cluster import Cluster, running_cluster

HEADER_TIMEOUT = 1.0
KEEPALIVE = 3.0
CAP = 20


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    server = {"header_timeout_s": HEADER_TIMEOUT, "keepalive_s": KEEPALIVE, "max_connections": CAP}
    with running_cluster(tmp_path_factory.mktemp("bounds"), replicas=1, server=server) as c:
        yield c


def _connect(cluster: Cluster) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", cluster.node("frontend").port), timeout=15)
    return s


def _closed_within(s: socket.socket, seconds: float, drip: bytes | None = None) -> float | None:
    """Seconds until the server closes `s` (dripping `drip` every 0.25 s meanwhile), or None if it did not."""
    start = time.monotonic()
    s.settimeout(0.25)
    while time.monotonic() - start < seconds:
        try:
            if s.recv(4096) == b"":
                return time.monotonic() - start
        except socket.timeout:
            if drip:
                try:
                    s.sendall(drip)
                except OSError:
                    return time.monotonic() - start
        except OSError:
            return time.monotonic() - start
    return None


def _read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    s.settimeout(15)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        body += s.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_a_request_whose_headers_trickle_in_is_cut_off_at_the_header_deadline(bounded: Cluster) -> None:
    with _connect(bounded) as s:
        s.sendall(b"GET /lookup/1 HTTP/1.1\r\nHost: x\r\n")
        closed = _closed_within(s, 10.0, drip=b"X-Slow: 1\r\n")
    assert closed is not None, "a slowloris connection was allowed to live on"
    assert HEADER_TIMEOUT - 0.2 <= closed < HEADER_TIMEOUT + 3


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_s(bounded: Cluster) -> None:
    with _connect(bounded) as s:
        s.sendall(b"GET /lookup/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(s)[0] == 200
        closed = _closed_within(s, 15.0)
    assert closed is not None and KEEPALIVE - 0.5 <= closed < KEEPALIVE + 4, closed


def test_a_request_in_progress_is_not_cut_off_by_the_header_deadline(bounded: Cluster) -> None:
    """Headers complete, body slow: the request is in a handler (as a long-lived stream would be)."""
    body = json.dumps({"stock_delta": 0}).encode()
    with _connect(bounded) as s:
        s.sendall(_admin_post_head(bounded, len(body)) + body[:3])
        time.sleep(HEADER_TIMEOUT * 2.5)
        s.sendall(body[3:])
        assert _read_response(s)[0] == 200


def test_at_the_cap_a_newcomer_takes_the_place_of_the_longest_idle_connection(bounded: Cluster) -> None:
    idle = [_connect(bounded) for _ in range(CAP)]
    try:
        time.sleep(0.5)
        with _connect(bounded) as s:
            s.sendall(b"GET /lookup/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_response(s)[0] == 200
        assert _closed_within(idle[0], 2.0) is not None, "the oldest idle connection should have made room"
    finally:
        for s in idle:
            s.close()


def test_at_the_cap_with_every_connection_busy_a_newcomer_gets_503_and_the_busy_ones_finish(bounded: Cluster) -> None:
    body = json.dumps({"stock_delta": 0}).encode()
    busy = [_connect(bounded) for _ in range(CAP)]
    try:
        for s in busy:
            s.sendall(_admin_post_head(bounded, len(body)) + body[:3])  # mid-request: not evictable
        time.sleep(0.5)
        with _connect(bounded) as s:
            status, headers, answer = _read_response(s)
        assert status == 503
        assert headers.get("retry-after") == "1"
        assert json.loads(answer)["error"]["code"] == "unavailable"
        for s in busy:
            s.sendall(body[3:])
        assert [_read_response(s)[0] for s in busy] == [200] * CAP
    finally:
        for s in busy:
            s.close()


def _admin_post_head(cluster: Cluster, length: int) -> bytes:
    return (f"POST /admin/books/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cluster.admin_token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()
