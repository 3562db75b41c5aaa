"""The web pages' HTTP side on a cluster without the control endpoint: pages and files are served,
mistakes are JSON errors, the dashboard's buttons are off, and the live stream carries the status."""

from __future__ import annotations

import json

import requests

from support.cluster import Cluster


def test_the_pages_and_their_files_are_served(cluster: Cluster) -> None:
    for path, kind in (("/", "text/html"), ("/dashboard", "text/html"), ("/web/store.js", "javascript"), ("/web/style.css", "text/css")):
        reply = requests.get(cluster.frontend_url + path, timeout=10)
        assert reply.status_code == 200 and kind in reply.headers["Content-Type"], path


def test_an_unknown_file_is_a_json_404(cluster: Cluster) -> None:
    for path in ("/web/nope.js", "/web/..%2Fapp.py", "/web/"):
        reply = requests.get(cluster.frontend_url + path, timeout=10)
        assert reply.status_code == 404, path
        assert "code" in reply.json()["error"], path


def test_without_the_control_endpoint_the_buttons_are_off(cluster: Cluster) -> None:
    assert requests.get(f"{cluster.frontend_url}/dashboard/api/config", timeout=10).json()["control"] is False
    reply = requests.post(f"{cluster.frontend_url}/dashboard/api/control/nodes/catalog-0/kill", headers=cluster.admin_headers(), timeout=10)
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "control_off"


def test_the_stream_sends_the_backlog_then_the_status_and_rates_every_second(cluster: Cluster) -> None:
    events: list[tuple[str, dict]] = []
    with requests.get(f"{cluster.frontend_url}/dashboard/api/stream", stream=True, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        name = None
        for line in reply.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name or "", json.loads(line.split(":", 1)[1])))
            if len(events) == 3:  # hello and two frames: bounded, about two seconds
                break
    assert [e[0] for e in events] == ["hello", "frame", "frame"]
    assert set(events[0][1]) == {"history", "events", "latest"}
    frame = events[2][1]
    assert {n["name"] for n in frame["status"]["nodes"]} >= {"catalog-0", "order-0", "frontend-0"}
    assert set(frame["rates"]) == {"frontend", "catalog", "order"}  # the second frame has an interval to rate
