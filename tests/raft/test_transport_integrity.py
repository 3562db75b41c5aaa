"""Every Raft frame is authenticated: a frame altered, injected, replayed or reordered between two members
is never delivered, and the connection it came on is closed (and logged once); the sender re-dials and
traffic goes on.

Node 2's stream to node 1 runs through a real TCP relay on loopback that passes the handshake untouched and
then does one thing to the frames, as someone on the network path could.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable

import pytest

from pygmy.raft.messages import Message, TimeoutNow
from pygmy.raft.transport import MAGIC, Transport
from support.cluster import free_ports

SECRET = "integrity-test-secret"
HELLO = 8 + 16 + 32  # client id, nonce, proof: what the dialling side sends before its first frame
MAC = 32

# One tampering: the list of raw frames (length | payload | MAC) to pass on for the frames read so far.
Tamper = Callable[[list[bytes]], list[bytes]]


def flip_a_byte(frames: list[bytes]) -> list[bytes]:
    if len(frames) != 2:
        return [frames[-1]]
    frame = bytearray(frames[-1])
    frame[6] ^= 0x01  # inside the payload
    return [bytes(frame)]


def replay_the_first(frames: list[bytes]) -> list[bytes]:
    return [frames[-1], frames[0]] if len(frames) == 2 else [frames[-1]]


def swap_two(frames: list[bytes]) -> list[bytes]:
    if len(frames) == 2:
        return []  # hold the second frame back ...
    if len(frames) == 3:
        return [frames[2], frames[1]]  # ... and send it after the third
    return [frames[-1]]


def inject_a_forged_one(frames: list[bytes]) -> list[bytes]:
    if len(frames) != 2:
        return [frames[-1]]
    payload = frames[0][4:-MAC]  # a well-formed batch, with a MAC made up by someone without the key
    return [struct.pack(">I", len(payload)) + payload + b"\0" * MAC, frames[-1]]


async def relay(listen_port: int, target_port: int, tamper: Tamper) -> asyncio.Server:
    """Tampers with the first connection only: the one the sender dials after the rejection is left alone."""
    connections = 0

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        passes: Tamper = tamper if connections == 1 else (lambda frames: [frames[-1]])
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)

        async def downstream() -> None:  # node 1 -> node 2: greeting and proof, untouched
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await server_r.read(65536):
                    client_w.write(data)
            client_w.close()

        down = asyncio.create_task(downstream())
        frames: list[bytes] = []
        try:
            server_w.write(await client_r.readexactly(HELLO))
            while True:
                header = await client_r.readexactly(4)
                (length,) = struct.unpack(">I", header)
                frames.append(header + await client_r.readexactly(length + MAC))
                for frame in passes(frames):
                    server_w.write(frame)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            server_w.close()
            down.cancel()

    return await asyncio.start_server(handle, "127.0.0.1", listen_port)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def send_one_by_one(sender: Transport, terms: range) -> None:
    """One frame per message: each is flushed on its own before the next is queued."""
    for term in terms:
        sender.send(TimeoutNow(src=2, dst=1, term=term))
        sender.flush()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("tamper", "never_delivered"),
    [(flip_a_byte, 2), (replay_the_first, None), (swap_two, 3), (inject_a_forged_one, None)],
)
async def test_a_tampered_frame_is_never_delivered_and_closes_the_connection(
    tamper: Tamper, never_delivered: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    port_1, port_2, relay_port = free_ports(3)
    got: list[Message] = []
    node_1 = Transport(1, ("127.0.0.1", port_1), {1: ("127.0.0.1", port_1), 2: ("127.0.0.1", port_2)}, SECRET, got.extend)
    # Node 2 reaches node 1 only through the relay.
    node_2 = Transport(2, ("127.0.0.1", port_2), {1: ("127.0.0.1", relay_port), 2: ("127.0.0.1", port_2)}, SECRET, lambda _: None)
    server = await relay(relay_port, port_1, tamper)
    await node_1.start()
    await node_2.start()
    try:
        with caplog.at_level(logging.WARNING, logger="pygmy.raft.transport"):
            await send_one_by_one(node_2, range(1, 4))
            await wait_until(lambda: node_1.rejected_frames == 1)
            await send_one_by_one(node_2, range(10, 13))
            await wait_until(lambda: bool(got) and got[-1].term == 12)
        terms = [m.term for m in got]
        # Each frame at most once and in the order sent (so no replay, injection or reordering got through),
        # the one tampered with never, and the traffic of the next connection after it.
        assert terms[0] == 1 and terms == sorted(set(terms)) and never_delivered not in terms, terms
        assert terms[-3:] == [10, 11, 12], terms
        assert node_1.rejected_frames == 1
        assert sum("fails its MAC" in r.getMessage() for r in caplog.records) == 1  # logged once
    finally:
        await node_1.close()
        await node_2.close()
        server.close()


async def test_frames_through_an_honest_relay_all_arrive() -> None:
    """The same relay passing frames unchanged: the test above fails only for the tampering."""
    port_1, port_2, relay_port = free_ports(3)
    got: list[Message] = []
    node_1 = Transport(1, ("127.0.0.1", port_1), {1: ("127.0.0.1", port_1), 2: ("127.0.0.1", port_2)}, SECRET, got.extend)
    node_2 = Transport(2, ("127.0.0.1", port_2), {1: ("127.0.0.1", relay_port), 2: ("127.0.0.1", port_2)}, SECRET, lambda _: None)
    server = await relay(relay_port, port_1, lambda frames: [frames[-1]])
    await node_1.start()
    await node_2.start()
    try:
        await send_one_by_one(node_2, range(1, 5))
        await wait_until(lambda: len(got) == 4)
        assert [m.term for m in got] == [1, 2, 3, 4] and node_1.rejected_frames == 0
    finally:
        await node_1.close()
        await node_2.close()
        server.close()


async def test_a_stranger_without_the_secret_gets_no_frame_in() -> None:
    """Someone who dials the Raft port and sends frames without the handshake proof is cut off."""
    port_1, port_2 = free_ports(2)
    got: list[Message] = []
    node_1 = Transport(1, ("127.0.0.1", port_1), {1: ("127.0.0.1", port_1), 2: ("127.0.0.1", port_2)}, SECRET, got.extend)
    await node_1.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_1)
        greeting = await reader.readexactly(len(MAGIC) + 16)
        assert greeting.startswith(MAGIC)
        writer.write(struct.pack(">q", 2) + b"\0" * 16 + b"\0" * 32)  # node 2, a made-up proof
        assert await reader.read(100) == b""  # closed without a word
        await wait_until(lambda: node_1.rejected == 1)
        assert got == []
    finally:
        await node_1.close()
