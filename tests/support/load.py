"""A bounded client load for fault tests: threads of lookups, searches, order listings and buys through one frontend, each
thread stopping at its request count or the time limit, whichever comes first, with every answer recorded."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import requests


@dataclass(frozen=True)
class Outcome:
    kind: str  # "lookup", "search", "orders" or "buy"
    status: int  # HTTP status; 0 when no answer came at all
    started: float  # time.monotonic() when sent
    code: str | None = None  # the error code of an error answer
    retry_after: str | None = None
    order_id: int | None = None


@dataclass
class Load:
    """`readers` threads taking turns at lookups, searches and order listings, `buyers` threads buying `item` (no key: the
    frontend makes one), until `max_requests` each or `seconds` have passed."""

    base_url: str
    readers: int = 4
    buyers: int = 2
    item: int = 1
    max_requests: int = 2000
    seconds: float = 6.0
    outcomes: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Load":
        self._end = time.monotonic() + self.seconds
        steps: list[Callable[[requests.Session, int], Outcome]] = [self._read] * self.readers + [self._buy] * self.buyers
        self._threads = [threading.Thread(target=self._run, args=(step,), daemon=True) for step in steps]
        for t in self._threads:
            t.start()
        return self

    def join(self) -> list[Outcome]:
        for t in self._threads:
            t.join(self.seconds + 30)
        return list(self.outcomes)

    def stop(self) -> list[Outcome]:
        self._stop.set()
        return self.join()

    def _run(self, step: Callable[[requests.Session, int], Outcome]) -> None:
        with requests.Session() as session:
            for n in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() >= self._end:
                    return
                outcome = step(session, n)
                with self._lock:
                    self.outcomes.append(outcome)

    def _read(self, session: requests.Session, n: int) -> Outcome:
        kind, path = [("lookup", f"/lookup/{1 + n % 5}"), ("search", "/search/ds"), ("orders", "/orders?limit=1")][n % 3]
        return _send(session, "GET", self.base_url + path, kind)

    def _buy(self, session: requests.Session, n: int) -> Outcome:
        return _send(session, "POST", f"{self.base_url}/buy/{self.item}", "buy")


def _send(session: requests.Session, method: str, url: str, kind: str) -> Outcome:
    started = time.monotonic()
    try:
        resp = session.request(method, url, timeout=20)
    except requests.RequestException:
        return Outcome(kind, 0, started)
    body = resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else {}
    error = body.get("error") if isinstance(body, dict) else None
    return Outcome(
        kind, resp.status_code, started,
        code=error.get("code") if isinstance(error, dict) else None,
        retry_after=resp.headers.get("Retry-After"),
        order_id=body.get("order_id") if resp.status_code == 200 and isinstance(body, dict) else None,
    )
