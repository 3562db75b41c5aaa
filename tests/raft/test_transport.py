"""Transport between Raft nodes: authenticated persistent streams that deliver in order and reconnect."""

from __future__ import annotations

import asyncio

from pygmy.raft.messages import AppendEntriesResponse, Message, TimeoutNow
from pygmy.raft.transport import Transport
from support.cluster import free_ports

SECRET = "test-cluster-secret"


def pair(secret_b: str = SECRET) -> tuple[Transport, Transport, list[Message], list[Message]]:
    addr = {i: ("127.0.0.1", port) for i, port in zip((1, 2), free_ports(2))}
    got_a: list[Message] = []
    got_b: list[Message] = []
    a = Transport(1, addr[1], addr, SECRET, got_a.extend)
    b = Transport(2, addr[2], addr, secret_b, got_b.extend)
    return a, b, got_a, got_b


async def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def ack(src: int, dst: int, n: int) -> AppendEntriesResponse:
    return AppendEntriesResponse(src=src, dst=dst, term=1, success=True, match_index=n)


async def test_messages_arrive_in_order_both_ways() -> None:
    a, b, got_a, got_b = pair()
    await a.start()
    await b.start()
    try:
        for n in range(500):
            a.send(ack(1, 2, n))
        b.send(TimeoutNow(src=2, dst=1, term=4))
        await wait_until(lambda: len(got_b) == 500 and len(got_a) == 1)
        assert [m.match_index for m in got_b] == list(range(500))  # type: ignore[union-attr]
        assert got_a == [TimeoutNow(src=2, dst=1, term=4)]
        assert a.frames_sent < 500  # queued messages share frames
    finally:
        await a.close()
        await b.close()


async def test_a_peer_with_the_wrong_secret_is_rejected() -> None:
    a, b, got_a, got_b = pair(secret_b="not-the-secret")
    await a.start()
    await b.start()
    try:
        b.send(TimeoutNow(src=2, dst=1, term=9))
        await wait_until(lambda: a.rejected >= 1)
        a.send(TimeoutNow(src=1, dst=2, term=9))
        await wait_until(lambda: b.rejected >= 1)
        await asyncio.sleep(0.1)
        assert got_a == [] and got_b == []
    finally:
        await a.close()
        await b.close()


async def test_a_forged_sender_id_is_not_delivered() -> None:
    a, b, got_a, _ = pair()
    await a.start()
    await b.start()
    try:
        b.send(TimeoutNow(src=3, dst=1, term=1))  # claims to come from node 3 on node 2's stream
        b.send(TimeoutNow(src=2, dst=1, term=2))
        await wait_until(lambda: len(got_a) == 1)
        assert got_a == [TimeoutNow(src=2, dst=1, term=2)]
    finally:
        await a.close()
        await b.close()


async def test_sender_reconnects_after_the_peer_restarts() -> None:
    a, b, _, got_b = pair()
    await a.start()
    await b.start()
    try:
        a.send(ack(1, 2, 1))
        await wait_until(lambda: len(got_b) == 1)
        await b.close()
        got_again: list[Message] = []
        b = Transport(2, b.listen, {1: a.listen, 2: b.listen}, SECRET, got_again.extend)
        await b.start()

        # Raft re-sends until it hears back; so does this loop.
        async def resend() -> None:
            while not got_again:
                a.send(ack(1, 2, 2))
                await asyncio.sleep(0.05)

        await asyncio.wait_for(resend(), 10)
        assert got_again[0] == ack(1, 2, 2)
    finally:
        await a.close()
        await b.close()
