"""A hostile client, run as its own process: slowloris connections and a storm of half-sent requests.

    python tests/support/hostile.py PORT --slowloris 300 --storm 2000 --seconds 15

- slowloris: each connection sends a request line, then one more header line every `--drip` seconds,
  never finishing its headers; when the server closes it, it records how long the server let it live
  and opens another (as a real attacker would).
- storm: connections that each send half a request line and then wait; closed ones are reopened, up to
  `--storm-reopens` times the storm in all, so the loop is bounded in count as well as in time.
Connections come from 127.0.0.2 up, so 20,000 of them do not exhaust one source address's ports. At the
end it prints one JSON object: what the server did to its connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from typing import Any

SOURCES = [f"127.0.0.{i}" for i in range(2, 42)]


class Tally:
    def __init__(self) -> None:
        self.opened = {"slowloris": 0, "storm": 0}
        self.closed_by_server = {"slowloris": 0, "storm": 0}
        self.connect_failed = 0
        self.lifetimes: list[float] = []  # how long the server let each slowloris connection live
        self.survived: list[float] = []  # lifetimes of slowloris connections still open when the attack ended


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(port: int, n: int, tally: Tally, pause: float) -> Streams | None:
    """A connection from the n-th source address, or None (counted, after a pause) if it failed."""
    try:
        return await asyncio.open_connection("127.0.0.1", port, local_addr=(SOURCES[n % len(SOURCES)], 0))
    except OSError:
        tally.connect_failed += 1
        await asyncio.sleep(pause)
        return None


async def _slowloris(port: int, n: int, drip: float, end: float, tally: Tally) -> None:
    while time.monotonic() < end:
        streams = await _connect(port, n, tally, 0.2)
        if streams is None:
            continue
        reader, writer = streams
        opened = time.monotonic()
        tally.opened["slowloris"] += 1
        ended = False
        try:
            writer.write(b"GET /lookup/1 HTTP/1.1\r\nHost: pygmy\r\n")
            line = 0
            while time.monotonic() < end:
                # Wait for the drip interval, or for the server to close (a read returning b"").
                try:
                    data = await asyncio.wait_for(reader.read(4096), drip)
                except asyncio.TimeoutError:
                    line += 1
                    writer.write(f"X-Slow-{line}: {line}\r\n".encode())
                    await writer.drain()
                    continue
                # Closed (b"") or answered (a 503): either way the server ended it.
                del data
                ended = True
                break
        except (ConnectionError, OSError):
            ended = True
        finally:
            writer.close()
        if ended:
            tally.closed_by_server["slowloris"] += 1
            tally.lifetimes.append(time.monotonic() - opened)
        else:
            tally.survived.append(time.monotonic() - opened)


async def _storm_one(port: int, n: int, end: float, budget: list[int], tally: Tally) -> None:
    while time.monotonic() < end and budget[0] > 0:
        budget[0] -= 1
        streams = await _connect(port, n, tally, 0.5)
        if streams is None:
            continue
        reader, writer = streams
        tally.opened["storm"] += 1
        try:
            writer.write(b"GET /lookup/1 HT")
            await asyncio.wait_for(reader.read(4096), max(0.0, end - time.monotonic()))
            tally.closed_by_server["storm"] += 1
        except asyncio.TimeoutError:
            pass
        except (ConnectionError, OSError):
            tally.closed_by_server["storm"] += 1
        finally:
            writer.close()
        await asyncio.sleep(0.2)  # a pause before reopening: pressure, not a busy loop


async def attack(port: int, slowloris: int, storm: int, seconds: float, drip: float, reopens: int) -> dict[str, Any]:
    tally = Tally()
    start = time.monotonic()
    end = start + seconds
    budget = [storm * reopens]
    tasks = [asyncio.ensure_future(_slowloris(port, n, drip, end, tally)) for n in range(slowloris)]
    for n in range(storm):
        tasks.append(asyncio.ensure_future(_storm_one(port, slowloris + n, end, budget, tally)))
        if n % 500 == 499:
            await asyncio.sleep(0)  # let the first ones connect while the rest are created
    await asyncio.wait(tasks, timeout=seconds + 10)
    for task in tasks:
        task.cancel()
    now = time.monotonic()
    return {
        "seconds": round(now - start, 1),
        "opened": tally.opened,
        "closed_by_server": tally.closed_by_server,
        "connect_failed": tally.connect_failed,
        "slowloris_longest_life_s": round(max(tally.lifetimes, default=0.0), 2),
        "slowloris_survived": len(tally.survived),
        "slowloris_survived_longest_s": round(max(tally.survived, default=0.0), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--slowloris", type=int, default=300)
    parser.add_argument("--storm", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--drip", type=float, default=1.0, help="seconds between a slowloris' header lines")
    parser.add_argument("--storm-reopens", type=int, default=3)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(attack(args.port, args.slowloris, args.storm, args.seconds, args.drip, args.storm_reopens))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
