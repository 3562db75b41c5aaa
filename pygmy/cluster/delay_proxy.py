"""A TCP proxy that delays every byte by a fixed time each way: network latency without `netem`.

Each accepted connection is forwarded to one target. Every chunk read is stamped with `read_at + delay`
and written on at that time, in order; a chunk is never held back longer than `delay` because of the
chunks before it (they were stamped earlier), unless the receiver itself is slow. Memory is bounded: a
direction buffers at most `max_buffer` bytes, and beyond that stops reading, so TCP flow control pushes
back on the sender. An end of stream (FIN) is delayed like data and passed on as a half-close; a reset or
any error closes both sides. `pygmy delay-proxy` runs one proxy per `--route LISTEN=TARGET`.

Signals change the delay of every route at run time (for a baseline in the same run): SIGUSR2 sets it
to zero, SIGUSR1 back to `--delay-ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass

import typer

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
MAX_BUFFER = 4 * 1024 * 1024  # per direction of one connection


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Address":
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{text!r} is not HOST:PORT")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Delay:
    """The delay every route applies, changeable while connections are open (seconds)."""

    def __init__(self, seconds: float) -> None:
        self.configured = seconds
        self.seconds = seconds


class _Buffer:
    """One direction's chunks in flight, with their release times, bounded in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()  # b"" is the end of the stream
        self.room = asyncio.Event()
        self.room.set()

    async def put(self, release_at: float, chunk: bytes) -> None:
        while self.size + len(chunk) > self.limit and self.size > 0:
            self.room.clear()
            await self.room.wait()  # not reading meanwhile: the sender's TCP window fills up
        self.size += len(chunk)
        self.chunks.put_nowait((release_at, chunk))

    async def get(self) -> tuple[float, bytes]:
        release_at, chunk = await self.chunks.get()
        self.size -= len(chunk)
        self.room.set()
        return release_at, chunk


async def _read_side(reader: asyncio.StreamReader, buffer: _Buffer, delay: Delay) -> None:
    while True:
        chunk = await reader.read(CHUNK)
        # Stamped when read, so queueing behind earlier chunks adds nothing to this one's delay.
        await buffer.put(time.monotonic() + delay.seconds, chunk)
        if not chunk:
            return


async def _write_side(writer: asyncio.StreamWriter, buffer: _Buffer) -> None:
    while True:
        release_at, chunk = await buffer.get()
        wait = release_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if not chunk:
            if writer.can_write_eof():
                writer.write_eof()  # a half-close: the other direction may still carry a reply
            return
        writer.write(chunk)
        await writer.drain()


class DelayProxy:
    """Listens on `listen` and forwards each connection to `target`, `delay` late each way."""

    def __init__(self, listen: Address, target: Address, delay: Delay, max_buffer: int = MAX_BUFFER) -> None:
        self.listen = listen
        self.target = target
        self.delay = delay
        self.max_buffer = max_buffer
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, self.listen.host, self.listen.port)

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose, if `listen.port` was 0)."""
        assert self._server is not None, "start the proxy first"
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accepted(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._forward(client_reader, client_writer)
        except asyncio.CancelledError:
            pass  # the proxy is closing; a handler that ends cancelled makes asyncio log an error
        finally:
            await _close(client_writer)
            self._connections.discard(task)

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(self.target.host, self.target.port)
        except OSError as exc:
            log.info("A connection to %s was closed: its target %s refused it (%s).", self.listen, self.target, exc)
            return
        try:
            # One task group: an error in any of the four halves (a reset) stops the other three.
            async with asyncio.TaskGroup() as group:
                for reader, writer in ((client_reader, target_writer), (target_reader, client_writer)):
                    buffer = _Buffer(self.max_buffer)
                    group.create_task(_read_side(reader, buffer, self.delay))
                    group.create_task(_write_side(writer, buffer))
        except* OSError:
            pass  # a reset on either side: both are closed below
        finally:
            await _close(target_writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()


def parse_route(text: str) -> tuple[Address, Address]:
    listen, sep, target = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r} is not LISTEN=TARGET")
    return Address.parse(listen), Address.parse(target)


async def serve(routes: list[tuple[Address, Address]], delay: Delay) -> None:
    """Run a proxy per route until cancelled; SIGUSR1/SIGUSR2 switch the delay on/off."""
    loop = asyncio.get_running_loop()

    def set_delay(seconds: float) -> None:
        delay.seconds = seconds
        log.info("Every route now delays each direction by %.0f ms.", seconds * 1000)

    loop.add_signal_handler(signal.SIGUSR1, set_delay, delay.configured)
    loop.add_signal_handler(signal.SIGUSR2, set_delay, 0.0)
    proxies = [DelayProxy(listen, target, delay) for listen, target in routes]
    for proxy in proxies:
        await proxy.start()
        log.info("Forwarding %s to %s, %.0f ms late each way.", proxy.listen, proxy.target, delay.seconds * 1000)
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.gather(*(p.close() for p in proxies))


def main(
    route: list[str] = typer.Option(..., "--route", help="LISTEN_HOST:PORT=TARGET_HOST:PORT; repeat for more."),
    delay_ms: float = typer.Option(50.0, "--delay-ms", min=0, help="Delay added to each direction, in ms."),
) -> None:
    """Forward TCP ports to targets with a fixed delay each way (SIGUSR2: no delay, SIGUSR1: back to --delay-ms)."""
    try:
        routes = [parse_route(r) for r in route]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--route") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s delay-proxy %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(routes, Delay(delay_ms / 1000)))


if __name__ == "__main__":
    typer.run(main)
