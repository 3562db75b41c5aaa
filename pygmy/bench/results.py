"""The results folder of one experiment: a CSV and a JSON for every figure, PNG charts, and a record of
the machine and the exact command line (in every JSON and in meta.json)."""

from __future__ import annotations

import csv
import datetime
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from pygmy.bench.sampling import round_floats

VERSIONS = ("pygmy", "aiohttp", "uvloop", "orjson", "prometheus-client", "matplotlib")


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU, Python, OS, and the versions that matter."""
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def command_line() -> str:
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


class Results:
    """`<root>/<experiment>-<UTC time>/`: figures go in with `figure()`, charts with `chart_path()`."""

    def __init__(self, root: Path, experiment: str, settings: dict[str, Any]) -> None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.folder = root / f"{experiment}-{stamp}"
        suffix = 1
        while self.folder.exists():
            suffix += 1
            self.folder = root / f"{experiment}-{stamp}-{suffix}"
        self.folder.mkdir(parents=True)
        self.meta = {"experiment": experiment, "command": command_line(), "settings": settings,
                     "machine": machine(), "started": stamp}
        self._write_json("meta.json", self.meta)

    def figure(self, name: str, rows: list[dict[str, Any]], notes: list[str] | None = None) -> None:
        """`name.csv` (one row per dict) and `name.json` (the rows with the machine and command)."""
        rows = round_floats(rows)
        columns: list[str] = []
        for row in rows:
            columns += [key for key in row if key not in columns]
        with open(self.folder / f"{name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        self._write_json(f"{name}.json", {**self.meta, "figure": name, "notes": notes or [], "rows": rows})

    def chart_path(self, name: str) -> Path:
        return self.folder / f"{name}.png"

    def _write_json(self, name: str, value: Any) -> None:
        (self.folder / name).write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
