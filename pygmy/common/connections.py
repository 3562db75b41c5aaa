"""Bounds on what a client's connection may hold: slowloris and connection storms cannot starve a node.

aiohttp's server reads a request's headers for as long as the client keeps sending them (its keep-alive
timer does not run while a request is half-read on older versions, and nothing caps open connections),
so thousands of half-sent requests hold their sockets until the process runs out of file descriptors.
`GuardedHandler` is aiohttp's own protocol (`web.RequestHandler`) with three bounds added where the bytes
arrive:
- a header deadline: a request whose first byte has arrived must have all its headers within
  `header_timeout_s`, however slowly they trickle in, or the connection is closed;
- the idle keep-alive timeout (`keepalive_s`), aiohttp's own, between requests;
- a cap on open connections per process (`max_connections`): a newcomer over the cap takes the place of
  the connection that has waited longest without a request in progress (an idle keep-alive or a
  half-sent request: both are cheap to lose, a client must retry either anyway); if every connection has
  a request in progress, the newcomer is answered 503 with Retry-After and closed at once.
A connection with a request in progress (a long-lived stream such as server push included) is never timed
out or evicted by these rules, but it counts toward the cap.
"""

from __future__ import annotations

import asyncio
import ssl
import logging
import resource
from collections import OrderedDict
from typing import Any, cast

from aiohttp import web
from prometheus_client import Counter, Gauge

from pygmy.common.jsonio import dumps
from pygmy.config import ServerSettings

log = logging.getLogger(__name__)

OPEN = Gauge("pygmy_connections_open", "Client connections this process holds open")
CLOSED = Counter("pygmy_connections_closed_total", "Connections closed by the server's bounds", ["reason"])

# Kept free below the file-descriptor limit for databases, logs, Raft peers and the outbound pool.
FD_RESERVE = 512
REPORT_EVERY = 10.0  # seconds between log lines that sum up connections closed by the bounds


def raise_fd_limit() -> int:
    """Raise this process's open-file limit from its soft to its hard value; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # a container may refuse; the soft limit still holds
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def shed_response() -> bytes:
    """The whole HTTP reply to a connection refused for load: 503, JSON, Retry-After, then closed."""
    body = dumps({"error": {"code": "unavailable", "message": "too many open connections; retry shortly"}})
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


SHED = shed_response()


class ConnectionGuard:
    """The connections of one listening socket: who is open, in which order they last went idle."""

    def __init__(self, settings: ServerSettings, fd_limit: int) -> None:
        self.settings = settings
        self.cap = max(1, min(settings.max_connections, fd_limit - FD_RESERVE))
        # Every open connection, oldest activity first: eviction looks from the front for an idle one.
        self._open: OrderedDict[GuardedHandler, None] = OrderedDict()
        self._closed: dict[str, int] = {}
        self._report: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, handler: "GuardedHandler") -> bool:
        """Make room for `handler` (evicting an idle connection if at the cap); False: shed it."""
        if len(self._open) >= self.cap and not self._evict_one():
            self.count("shed")
            return False
        self._open[handler] = None
        OPEN.set(len(self._open))
        return True

    def touch(self, handler: "GuardedHandler") -> None:
        """`handler` was just active: it goes to the back of the eviction order."""
        if handler in self._open:
            self._open.move_to_end(handler)

    def forget(self, handler: "GuardedHandler") -> None:
        if handler in self._open:
            del self._open[handler]
            OPEN.set(len(self._open))

    def _evict_one(self) -> bool:
        # Busy connections met on the way are moved to the back, so a scan never revisits them soon.
        for _ in range(len(self._open)):
            handler = next(iter(self._open))
            if handler.waiting_for_request():
                self.forget(handler)
                handler.force_close()
                self.count("evicted")
                return True
            self._open.move_to_end(handler)
        return False

    def count(self, reason: str) -> None:
        CLOSED.labels(reason).inc()
        self._closed[reason] = self._closed.get(reason, 0) + 1
        if self._report is None:
            self._report = asyncio.get_running_loop().call_later(REPORT_EVERY, self._log_report)

    def _log_report(self) -> None:
        # One line per interval, not one per connection: under attack a line each would flood the log.
        self._report = None
        closed, self._closed = self._closed, {}
        words = {
            "header_timeout": f"did not finish their request headers within {self.settings.header_timeout_s:g} s",
            "evicted": "were idle and made room for new ones at the cap",
            "shed": "were refused with 503 because all connections had a request in progress",
        }
        parts = [f"{n} {words.get(reason, reason)}" for reason, n in sorted(closed.items())]
        log.warning(
            "in the last %g s, connections were closed by the server's bounds: %s (%d open, cap %d)",
            REPORT_EVERY, "; ".join(parts), len(self._open), self.cap,
        )


class GuardedHandler(web.RequestHandler):
    """aiohttp's HTTP/1.1 protocol with a header deadline and a place under the connection cap."""

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._admitted = False
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(self):
            shed = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
            shed.write(SHED)
            shed.close()
            return
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return  # shed: aiohttp never saw this connection
        self._guard.forget(self)
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        was_waiting = self.waiting_for_request()
        requests_before = self._request_count
        super().data_received(data)
        self._guard.touch(self)
        if self._request_count != requests_before:
            self._cancel_header_deadline()  # a request's headers are complete: the handler has it now
        elif was_waiting and self._header_deadline is None and not self._force_close:
            # The first bytes of a request: from now on its headers have a deadline, however they trickle.
            self._header_deadline = self._loop.call_later(self._guard.settings.header_timeout_s, self._headers_late)

    def waiting_for_request(self) -> bool:
        """No request in progress or queued: idle between requests, or reading a request's headers."""
        return not self._request_in_progress and not self._messages and not self._force_close

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.waiting_for_request():
            self._guard.count("header_timeout")
            self._guard.forget(self)
            self.force_close()

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None


async def listen(
    runner: web.AppRunner, host: str, port: int, settings: ServerSettings, *, backlog: int = 1024,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[asyncio.Server, ConnectionGuard]:
    """Serve `runner`'s application on host:port through `GuardedHandler` (instead of a `web.TCPSite`)."""
    loop = asyncio.get_running_loop()
    guard = ConnectionGuard(settings, raise_fd_limit())
    manager = runner.server
    assert manager is not None, "runner.setup() first"

    def protocol() -> GuardedHandler:
        return GuardedHandler(manager, guard, loop=loop, keepalive_timeout=settings.keepalive_s, access_log=None)

    server = await loop.create_server(protocol, host, port, reuse_address=True, backlog=backlog, ssl=ssl_context)
    return server, guard
