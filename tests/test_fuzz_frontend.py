"""A bounded fuzz of the public API: whatever the path, query, headers and body, the answer is never a 5xx
other than 503 (and every error is the JSON error shape). 200 examples per run; the seed is printed on failure."""

from __future__ import annotations

import socket
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings, strategies as st

from support.cluster import Cluster

ROUTES = ["/lookup/{}", "/lookup?item={}", "/buy/{}", "/buy?item={}", "/search/{}", "/search?topic={}",
          "/orders/{}", "/orders?offset={}&limit={}", "/admin/books/{}", "/health", "/openapi.json", "/{}"]
HEADER_NAMES = ["Idempotency-Key", "Authorization", "Content-Encoding", "Content-Type", "X-Pygmy-Secret",
                "Transfer-Encoding", "Accept-Encoding"]
# Never a real item id (1-999): the fuzz runs on the shared session cluster and must not buy its stock.
segment = st.one_of(st.text(max_size=30).filter(lambda t: not (t.isascii() and t.strip().isdigit())),
                    st.integers(-(2**70), 2**70).filter(lambda n: not 0 <= n < 1000).map(str), st.just("1" * 4400))
header_value = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
body = st.one_of(st.binary(max_size=200), st.dictionaries(st.sampled_from(["stock_delta", "cost", "item", "x"]),
                                                          st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5), st.none()),
                                                          max_size=3).map(lambda d: repr(d).replace("'", '"').encode()))


def _send(port: int, method: str, target: str, headers: list[tuple[str, bytes]], payload: bytes) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
    for name, value in headers:
        head += name.encode() + b": " + value + b"\r\n"
    if not any(n.lower() == "transfer-encoding" for n, _ in headers):
        head += f"Content-Length: {len(payload)}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head + b"\r\n" + payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST"]), route=st.sampled_from(ROUTES), a=segment, b=segment,
       headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_value), max_size=3), payload=body)
def test_no_input_makes_the_frontend_answer_5xx_other_than_503(
    cluster: Cluster, method: str, route: str, a: str, b: str, headers: list[tuple[str, bytes]], payload: bytes
) -> None:
    target = route.format(quote(a, safe=""), quote(b, safe=""))
    reply = _send(int(cluster.frontend_url.rsplit(":", 1)[1]), method, target, headers, payload)
    if not reply:
        return  # the server closed a request it could not parse at all: allowed, it is not an answer
    status = int(reply.split(b" ", 2)[1])
    assert status < 500 or status == 503, reply[:600]
