"""`pygmy bench`: every experiment at a tiny size, run as a user runs it, writes its table, a CSV and a JSON
for every figure (with the machine and the exact command line), PNG charts, names its folder on its last
line, and leaves no process running; against a running cluster it restocks what it buys and leaves the
books balanced (`pygmy check`). The figures themselves are not asserted: benchmarks print, tests check."""

from __future__ import annotations

import csv
import dataclasses
import json
import tempfile
from pathlib import Path

import pytest

from support.cli import run_pygmy, succeeded
from support.cluster import running_cluster
from support.http import Api

TIMEOUT = 180

# experiment -> (arguments, the figures it must write, the charts it must draw)
EXPERIMENTS = {
    "latency": (["-n", "15", "--replicas", "1"], ["latency"], ["latency-cache-on"]),
    "invalidation": (["-n", "5", "--replicas", "1"], ["buys", "misses"], ["buys", "misses"]),
    "throughput": (["--concurrency", "1,4", "--rates", "20", "--seconds", "0.5", "--mix", "90/10", "--replicas", "1"],
                   ["throughput"], ["throughput-closed", "latency-closed", "latency-open"]),
    "failover": (["--seconds", "4", "--rate", "10"], ["timeline", "recovery"], ["failover"]),
    "scale": (["--frontends", "1", "--replica-counts", "1", "--seconds", "0.3", "--concurrency", "2"], ["scale"], ["scale"]),
}


def bench_processes() -> set[int]:
    """PIDs of processes running from a spawned benchmark cluster's temporary directory."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"pygmy-bench-" in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def spawn_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("pygmy-bench-*"))


def folder_of(stdout: str) -> Path:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("results in "), f"the last line must name the results folder, not {last!r}"
    return Path(last.removeprefix("results in "))


@dataclasses.dataclass(frozen=True)
class Run:
    stdout: str
    folder: Path
    left_running: set[int]
    left_dirs: set[Path]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Each experiment run once, as a user runs it (shared by the tests that read its output)."""
    return {}


def ran(runs: dict[str, Run], experiment: str, out: Path) -> Run:
    if experiment not in runs:
        args = EXPERIMENTS[experiment][0]
        before, dirs = bench_processes(), spawn_dirs()
        stdout = succeeded(run_pygmy("bench", experiment, "--spawn", "--out", str(out), *args, timeout=TIMEOUT))
        runs[experiment] = Run(stdout, folder_of(stdout), bench_processes() - before, spawn_dirs() - dirs)
    return runs[experiment]


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_each_experiment_writes_its_figures_and_charts_and_leaves_nothing_running(
    runs: dict[str, Run], tmp_path: Path, experiment: str
) -> None:
    run = ran(runs, experiment, tmp_path)
    _, figures, pngs = EXPERIMENTS[experiment]
    assert run.folder.name.startswith(f"{experiment}-") and run.folder.is_dir()
    for name in figures:
        rows = list(csv.DictReader(open(run.folder / f"{name}.csv")))
        assert rows, f"{name}.csv has no rows"
        doc = json.loads((run.folder / f"{name}.json").read_text())
        assert len(doc["rows"]) == len(rows)
        assert doc["machine"]["cores"] >= 1 and doc["machine"]["python"] and doc["machine"]["versions"]["pygmy"]
        assert f"bench {experiment} --spawn" in doc["command"]
    for name in pngs:
        assert (run.folder / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name}.png is not a PNG"
    assert not run.left_running, f"processes of a spawned cluster outlived the benchmark: {run.left_running}"
    assert not run.left_dirs, f"a spawned cluster's temporary directory was left behind: {run.left_dirs}"


def test_the_latency_table_shows_every_tier_with_the_references_numbers(runs: dict[str, Run], tmp_path: Path) -> None:
    run = ran(runs, "latency", tmp_path)
    rows = json.loads((run.folder / "latency.json").read_text())["rows"]
    buy = {r["tier"]: r for r in rows if r["method"] == "buy" and r["cache"] == "on"}
    assert set(buy) == {"client", "frontend", "order", "catalog"}, "a buy crosses every tier (Server-Timing)"
    assert buy["order"]["reference_mean"] == pytest.approx(31.505) and "(31.50)" in run.stdout
    assert all(r["p50"] <= r["p99"] for r in rows)


def test_failover_kills_the_three_victims_through_the_control_endpoint(runs: dict[str, Run], tmp_path: Path) -> None:
    run = ran(runs, "failover", tmp_path)
    kills = json.loads((run.folder / "recovery.json").read_text())["rows"]
    assert [k["role"] for k in kills] == ["catalog leader", "order follower", "order leader"]
    assert kills[0]["node"].startswith("catalog-") and kills[2]["node"].startswith("order-")
    assert kills[1]["node"] != kills[2]["node"]
    for leader in (kills[0], kills[2]):  # a leader really was killed: its group elected another, in a later term
        assert leader["new_leader"] not in ("", leader["node"]) and leader["new_term"] > leader["term"], leader
    assert all(k["recover_s"] >= 0 for k in kills)


def test_against_a_running_cluster_it_restocks_what_it_buys_and_the_books_still_balance(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "cluster") as cluster:
        api = Api(cluster.frontend_url, cluster.admin_token)
        for item in range(1, 8):
            api.set_stock(item, 2)  # fewer copies than the experiment buys
        stdout = succeeded(run_pygmy("bench", "latency", "--url", cluster.frontend_url, "--token", cluster.admin_token,
                                     "-n", "10", "--out", str(tmp_path / "out"), timeout=TIMEOUT))
        assert (folder_of(stdout) / "latency.csv").exists()
        succeeded(run_pygmy("check", "--config", str(cluster.config_path), timeout=TIMEOUT))


def bench_in_process(*args: str) -> tuple[int, str]:
    """`pygmy bench ARGS` through the real command-line app, in this process (no interpreter start-up)."""
    from typer.testing import CliRunner

    from pygmy.bench.command import bench

    result = CliRunner().invoke(bench, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_bad_options_are_refused_with_a_message(tmp_path: Path) -> None:
    for args in (["throughput", "--mix", "most"], ["throughput", "--concurrency", "0"], ["scale", "--replica-counts", "2"],
                 ["latency", "--url", "http://127.0.0.1:9", "--spawn"]):
        code, output = bench_in_process(*args, "--out", str(tmp_path))
        assert code == 2 and output.strip(), (args, output)


def test_a_cluster_that_cannot_be_reached_is_an_error_message_not_a_traceback(tmp_path: Path) -> None:
    result = run_pygmy("bench", "latency", "--url", "http://127.0.0.1:9", "-n", "1", "--out", str(tmp_path))
    assert result.returncode == 1 and "cannot reach" in result.stderr and "Traceback" not in result.stderr, result.stderr
