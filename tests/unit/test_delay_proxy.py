"""The delay proxy (pygmy/cluster/delay_proxy.py) on real loopback sockets: each byte arrives at least
`delay` late each way, in order, without piling delays up; big transfers get through in bounded memory;
ends of stream and closes reach the other side."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from typing import AsyncIterator, Awaitable, Callable

import pytest

from pygmy.cluster.delay_proxy import Address, Delay, DelayProxy, parse_route

DELAY = 0.1
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def proxied(handler: Handler, delay: float = DELAY, max_buffer: int = 4 * 1024 * 1024
                  ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, DelayProxy]]:
    """A target server running `handler`, a proxy in front of it, and a client connected to the proxy."""
    target = await asyncio.start_server(handler, "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    proxy = DelayProxy(Address("127.0.0.1", 0), Address("127.0.0.1", target_port), Delay(delay), max_buffer)
    await proxy.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        yield reader, writer, proxy
    finally:
        writer.close()
        await proxy.close()
        target.close()
        await target.wait_closed()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def recorder(arrivals: list[float]) -> Handler:
    """A target that notes when each byte arrives."""

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1):
            arrivals.append(time.monotonic())
        writer.close()

    return record


async def bytes_apart(writer: asyncio.StreamWriter, count: int, gap: float) -> list[float]:
    """Send `count` single bytes `gap` seconds apart; when each was sent."""
    sent = []
    for _ in range(count):
        sent.append(time.monotonic())
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(gap)
    return sent


async def test_a_round_trip_takes_at_least_the_delay_each_way() -> None:
    async with proxied(echo) as (reader, writer, _):
        for _ in range(3):
            sent = time.monotonic()
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
            took = time.monotonic() - sent
            assert took >= 2 * DELAY, f"a round trip took {took * 1000:.0f} ms, less than twice {DELAY * 1000:.0f} ms"


async def test_one_way_the_target_sees_each_chunk_at_least_the_delay_late() -> None:
    arrivals: list[float] = []
    record = recorder(arrivals)
    async with proxied(record) as (_, writer, _proxy):
        sent = await bytes_apart(writer, 5, 0.03)
        writer.write_eof()
        await asyncio.sleep(DELAY * 3)
    assert len(arrivals) == 5
    assert all(a - s >= DELAY for s, a in zip(sent, arrivals)), list(zip(sent, arrivals))


async def test_chunks_do_not_wait_for_each_other_only_for_the_delay() -> None:
    """Ten chunks 50 ms apart behind a 300 ms delay: the last arrives about 300 ms after it was sent.
    Delaying each chunk only once the one before it went out would pile up to 10 x 300 ms."""
    arrivals: list[float] = []
    record = recorder(arrivals)
    delay = 0.3
    async with proxied(record, delay=delay) as (_, writer, _proxy):
        sent = await bytes_apart(writer, 10, 0.05)
        await asyncio.sleep(delay * 2)
    assert len(arrivals) == 10
    last = arrivals[-1] - sent[-1]
    assert delay <= last < 2 * delay, f"the last chunk was {last * 1000:.0f} ms late behind a {delay * 1000:.0f} ms delay"


async def test_many_small_writes_arrive_in_order() -> None:
    async with proxied(echo, delay=0.02) as (reader, writer, _):
        expected = b"".join(f"{i:06d}".encode() for i in range(5000))
        for i in range(5000):
            writer.write(f"{i:06d}".encode())
            if i % 100 == 0:
                await writer.drain()
                await asyncio.sleep(0)
        assert await asyncio.wait_for(reader.readexactly(len(expected)), 20) == expected


async def test_a_large_transfer_gets_through_a_small_buffer_intact() -> None:
    payload = os.urandom(16 * 1024 * 1024)
    async with proxied(echo, delay=0.01, max_buffer=256 * 1024) as (reader, writer, _):

        async def send() -> None:
            for start in range(0, len(payload), 1 << 20):
                writer.write(payload[start:start + (1 << 20)])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        received = await asyncio.wait_for(reader.read(-1), 60)  # until the echo's end of stream
        await sender
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_a_receiver_that_does_not_read_pushes_back_on_the_sender() -> None:
    """The target reads nothing: the proxy buffers at most max_buffer, so the sender's writes stall after
    the kernel's socket buffers and that much, instead of the proxy's memory taking all 256 MiB."""
    stalled = asyncio.Event()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stalled.wait()
        writer.close()

    async with proxied(deaf, delay=0.0, max_buffer=256 * 1024) as (_, writer, _proxy):
        sent = 0
        block = b"\0" * (1 << 20)
        with contextlib.suppress(asyncio.TimeoutError):
            while sent < 256 * 1024 * 1024:
                writer.write(block)
                await asyncio.wait_for(writer.drain(), 1.0)
                sent += len(block)
        stalled.set()
    assert sent < 64 * 1024 * 1024, f"the sender got {sent >> 20} MiB out to a receiver that reads nothing"


async def test_an_end_of_stream_passes_through_late_and_the_reply_still_comes_back() -> None:
    """The client half-closes; the target sees the end (a delay later), answers, and closes; the client
    reads the answer and then the end of the stream."""
    seen_eof_at: list[float] = []

    async def reply_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read(-1)
        seen_eof_at.append(time.monotonic())
        writer.write(b"got " + request)
        await writer.drain()
        writer.close()

    async with proxied(reply_after_eof) as (reader, writer, _):
        writer.write(b"all")
        closed_at = time.monotonic()
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(-1), 5) == b"got all"
        assert seen_eof_at and seen_eof_at[0] - closed_at >= DELAY


async def test_a_target_that_closes_closes_the_client() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with proxied(hang_up) as (reader, _, _proxy):
        assert await asyncio.wait_for(reader.read(-1), 5) == b""


async def test_a_refused_target_closes_the_client() -> None:
    with socket_port() as free:
        proxy = DelayProxy(Address("127.0.0.1", 0), Address("127.0.0.1", free), Delay(DELAY))
        await proxy.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await asyncio.wait_for(reader.read(-1), 5) == b""
            writer.close()
        finally:
            await proxy.close()


async def test_closing_the_proxy_closes_open_connections() -> None:
    async with proxied(echo) as (reader, _, proxy):
        await proxy.close()
        assert await asyncio.wait_for(reader.read(-1), 5) == b""


@contextlib.contextmanager
def socket_port():  # type: ignore[no-untyped-def]
    """A loopback port nothing listens on (bound, not listening, so nobody else takes it meanwhile)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.parametrize("text", ["1.2.3.4:80", "1.2.3.4:80=5.6.7.8", "host=other:1", ":1=a:2"])
def test_a_route_must_be_two_host_port_pairs(text: str) -> None:
    with pytest.raises(ValueError):
        parse_route(text)


def test_a_route_names_where_to_listen_and_where_to_forward() -> None:
    assert parse_route("10.0.0.1:8001=10.0.0.2:8001") == (Address("10.0.0.1", 8001), Address("10.0.0.2", 8001))
