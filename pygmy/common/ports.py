"""Free loopback ports, for clusters started on the fly (`pygmy bench --spawn`, the tests)."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports nobody listens on right now (all held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
