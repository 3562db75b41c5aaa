"""Noticing a peer that went silent under an open TCP connection (a partition, a host that lost power).

A request written to a keep-alive connection whose peer has been cut off gets neither an answer nor an
error: the kernel retransmits it, with growing pauses, for many minutes. A caller that waits for the answer
then spends its whole deadline on one replica, and an idempotent request that another replica would have
answered in milliseconds ends as a timeout. No application timeout can fix this, because a slow answer
from a busy replica looks the same from above: cutting attempts short turns every overload into timeouts.

The kernel can tell the two apart. `TCP_USER_TIMEOUT` bounds how long sent data may stay unacknowledged
before the connection is dropped, and keep-alive probes check a connection on which we only wait. Both are
answered by the peer's kernel, not by its process, so a replica that is merely slow keeps its connection;
one that cannot be reached loses it within `DEAD_PEER_SECONDS`, the caller gets an error, and a request
that may be resent goes to the next replica. Raft's peer connections use the same bound, so after a
partition heals a link reconnects at once instead of waiting out the kernel's retransmission backoff.
"""

from __future__ import annotations

import socket
from typing import Any

DEAD_PEER_SECONDS = 2.0  # unacknowledged this long, a connection is dead: far above any RTT it will see


def watch(sock: Any, dead_after: float = DEAD_PEER_SECONDS) -> None:
    """Make the kernel drop `sock` (a socket, or asyncio's TransportSocket) once its peer has not
    acknowledged data, or answered keep-alive probes, for about `dead_after` seconds."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    probe_every = max(1, int(dead_after / 2))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, probe_every)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, probe_every)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
    # With a user timeout set, Linux also ends a connection whose keep-alive probes go unanswered by it.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(dead_after * 1000))


def watched_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """A socket factory for aiohttp's TCPConnector: a new outgoing socket, watched."""
    family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=type_, proto=proto)
    watch(sock)
    return sock
