"""Helpers for the browser tests: the cluster's state read through the public API, and waits on the page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from support.cluster import Cluster


def book(cluster: Cluster, item: int) -> dict[str, Any]:
    reply = requests.get(f"{cluster.frontend_url}/lookup/{item}", timeout=10)
    reply.raise_for_status()
    return reply.json()


def order_total(cluster: Cluster) -> int:
    reply = requests.get(f"{cluster.frontend_url}/orders?limit=1", timeout=10)
    reply.raise_for_status()
    return int(reply.json()["total"])


def console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for since the performance log was last read (Chrome DevTools events)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def foreign(urls: list[str], origin: str) -> list[str]:
    """The URLs that are not on `origin` (data: URLs never leave the browser)."""
    host = urlsplit(origin).netloc
    return [u for u in urls if not u.startswith("data:") and urlsplit(u).netloc != host]
