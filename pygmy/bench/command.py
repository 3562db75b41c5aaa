"""The `pygmy bench` subcommands: options, the cluster to run on, the progress bar, the table, the files.

Every experiment runs on its own cluster (`--spawn`, the default) or on a running one (`--url` and the
admin token, `--control-url` for failover), prints a rich table, writes CSV + JSON for every figure and
PNG charts into a results folder, and names that folder on its last line."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from pathlib import Path
from typing import Annotated, Any, Awaitable, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pygmy.bench import charts, failover, invalidation, latency, reference, scale, throughput
from pygmy.bench.loops import Mix
from pygmy.bench.results import Results
from pygmy.bench.sampling import TIERS
from pygmy.bench.target import Target, cache_switch_exists, running, spawned
from pygmy.client.api import ApiCallError

bench = typer.Typer(help="Experiments on a cluster: tables, CSV/JSON and PNG charts in a results folder.",
                    no_args_is_help=True, rich_markup_mode="rich")
out = Console()
err = Console(stderr=True)

# The options every experiment shares, declared once (each subcommand's signature names them with its default).
Url = Annotated[Optional[str], typer.Option("--url", help="Run against this running frontend instead of spawning a cluster.")]
Spawn = Annotated[bool, typer.Option("--spawn", help="Start a cluster of its own (temporary data dir, free ports), stopped at the end. The default without --url.")]
Token = Annotated[Optional[str], typer.Option("--token", envvar="PYGMY_ADMIN_TOKEN", help="Admin token of the --url cluster (restocks). Default: from the configuration.")]
ControlUrl = Annotated[Optional[str], typer.Option("--control-url", help="The --url cluster's control endpoint (pygmy up --control). Default: from the configuration.")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", "-c", envvar="PYGMY_CONFIG", help="Configuration of the --url cluster (token, control endpoint).")]
OutDir = Annotated[Path, typer.Option("--out", help="Where results folders are made.")]
Replicas = Annotated[int, typer.Option("--replicas", help="Replicas per group of a spawned cluster (odd).")]
Seconds = Annotated[float, typer.Option("--seconds", min=0.1, max=600, help="Length of each point.")]
MaxRequests = Annotated[int, typer.Option("--max-requests", min=1, help="Cap on the requests of a point.")]
MixText = Annotated[str, typer.Option("--mix", help="lookup, search, buy, LOOKUP/BUY (90/10) or LOOKUP/SEARCH/BUY.")]
OUT = Path("bench-results")


class Where:
    """The chosen target: spawn fresh clusters, or the one at --url."""

    def __init__(self, url: Optional[str], spawn: bool, token: Optional[str], control_url: Optional[str],
                 config: Optional[Path], replicas: int) -> None:
        if url is not None and spawn:
            err.print("[red]error:[/] give --url or --spawn, not both")
            raise typer.Exit(2)
        self.url, self.replicas = url, replicas
        if url is not None:
            from pygmy.config import load

            cfg = load(config)
            self.token = token or cfg.admin_token
            self.control_url = control_url or (cfg.control.url if cfg.control.enabled or control_url is None else None)

    @property
    def spawning(self) -> bool:
        return self.url is None

    @contextlib.contextmanager
    def target(self, *, cache: bool = True, replicas: Optional[int] = None, frontends: int = 1) -> Iterator[Target]:
        if self.url is not None:
            yield running(self.url, self.token, self.control_url)
            return
        with err.status(f"starting a cluster ({replicas or self.replicas} replicas per group, {frontends} frontend(s))..."):
            context = spawned(replicas=replicas or self.replicas, frontends=frontends, cache=cache)
            try:
                target = context.__enter__()
            except RuntimeError as exc:  # a node did not come up: the cluster is stopped already
                err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
                raise typer.Exit(1) from None
        try:
            yield target
        except BaseException as exc:
            if not context.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            context.__exit__(None, None, None)

    def settings(self) -> dict[str, Any]:
        return {"url": self.url, "spawn": self.spawning, "replicas": self.replicas if self.spawning else None}


def progress_bar(total: int, label: str) -> Progress:
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=True)
    bar.add_task(label, total=total)
    return bar


def measured(bar: Progress, work: Callable[[Callable[[], None]], Awaitable[Any]]) -> Any:
    """Run an experiment's coroutine with the bar advancing on each tick."""
    task = bar.task_ids[0]
    try:
        with bar:
            return asyncio.run(work(lambda: bar.advance(task)))
    except (ValueError, RuntimeError, ApiCallError) as exc:
        # The cluster refused or failed what the experiment needs: say what, without a traceback.
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


def cache_modes(where: Where) -> list[bool | None]:
    if not where.spawning:
        err.print("note: against --url the cache is as the cluster was started; one run.")
        return [None]
    if not cache_switch_exists():
        err.print("note: this Pygmy has no cache switch yet (\\[cache] enabled / pygmy up --no-cache): cache-on run only.")
        return [True]
    return [True, False]


def cache_label(cache: bool | None) -> str:
    return {True: "on", False: "off", None: "as running"}[cache]


def fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def done(results: Results) -> None:
    out.print(f"results in {results.folder}", markup=False, highlight=False)


def tier_cell(c: dict[str, Any], requests: int) -> str:
    """mean / p50 / p99 (reference); a tier most requests never reached (the catalog behind cache hits)
    says how few it timed."""
    cell = f"{fmt(c['mean'])} / {fmt(c['p50'])} / {fmt(c['p99'])} ({fmt(c['reference_mean'])})"
    return cell + (f", only {int(c['n'])} of {requests} reached it" if c["n"] < requests / 2 else "")


# -- latency -------------------------------------------------------------------------------------------


@bench.command("latency")
def latency_command(
    requests: Annotated[int, typer.Option("--requests", "-n", min=1, max=100_000, help="Sequential requests of each method.")] = 1000,
    url: Url = None, spawn: Spawn = False, token: Token = None, control_url: ControlUrl = None,
    config: ConfigFile = None, out_dir: OutDir = OUT, replicas: Replicas = 3,
) -> None:
    """Per-tier mean/p50/p99 of N sequential searches, lookups and buys, cache on and off (Tables 2 and 3)."""
    where = Where(url, spawn, token, control_url, config, replicas)
    results = Results(out_dir, "latency", {**where.settings(), "requests": requests})
    rows: list[dict[str, Any]] = []
    for cache in cache_modes(where):
        with where.target(cache=cache is not False) as target:
            found = measured(progress_bar(3 * requests, f"latency, cache {cache_label(cache)}"),
                             lambda tick: latency.run(target, requests, tick))
        for method, tiers in found.items():
            ref = reference.published(method, cache)
            for tier, figures in tiers.items():
                rows.append({"cache": cache_label(cache), "method": method, "tier": tier, **figures,
                             "reference_mean": ref.get(tier)})
    results.figure("latency", rows, ["reference_mean: the reference's Table 3 for cache on, Table 2 for cache off"])
    table = Table(title=f"Per-tier response time, ms: mean / p50 / p99 (reference mean), {requests} sequential requests each")
    table.add_column("cache")
    table.add_column("method")
    for tier in TIERS:
        table.add_column(tier, justify="right")
    for cache in dict.fromkeys(r["cache"] for r in rows):
        for method in latency.METHODS:
            cells = {r["tier"]: r for r in rows if r["cache"] == cache and r["method"] == method}
            table.add_row(cache, method, *(tier_cell(c, requests) if (c := cells.get(t)) else "-" for t in TIERS))
        charts.grouped_bars(results.chart_path(f"latency-cache-{cache.replace(' ', '-')}"),
                            f"Mean response time per tier, cache {cache}", list(latency.METHODS),
                            {t: [next((r["mean"] for r in rows if r["cache"] == cache and r["method"] == m and r["tier"] == t), 0.0)
                                 for m in latency.METHODS] for t in TIERS}, "ms")
    out.print(table)
    out.print("Reference: Table 2 (no cache) and Table 3 (cache), its tiers on separate EdLab hosts; ours on one machine's loopback.")
    done(results)


# -- invalidation ------------------------------------------------------------------------------------


@bench.command("invalidation")
def invalidation_command(
    requests: Annotated[int, typer.Option("--requests", "-n", min=1, max=100_000, help="Sequential buys per cluster; rounds of the reads after a buy.")] = 1000,
    url: Url = None, spawn: Spawn = False, token: Token = None, control_url: ControlUrl = None,
    config: ConfigFile = None, out_dir: OutDir = OUT, replicas: Replicas = 3,
) -> None:
    """Buys with and without cache invalidation (Table 4), alternating between a cache-on and a cache-off
    cluster run side by side; and the reads right after a buy (the lookup's miss)."""
    where = Where(url, spawn, token, control_url, config, replicas)
    results = Results(out_dir, "invalidation", {**where.settings(), "requests": requests, "interleaved": True})
    modes = cache_modes(where)
    labels = {True: "with", False: "without", None: "as running"}
    buy_rows: list[dict[str, Any]] = []
    miss_rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        targets = {cache: stack.enter_context(where.target(cache=cache is not False)) for cache in modes}
        tiers = measured(progress_bar(requests, "buys, " + " and ".join(f"invalidation {labels[c]}" for c in modes)),
                         lambda tick: invalidation.buys({labels[c]: t for c, t in targets.items()}, requests, tick))
        for cache, target in targets.items():
            reads = measured(progress_bar(requests, f"reads after a buy, cache {cache_label(cache)}"),
                             lambda tick: invalidation.reads_after_buys(target, requests, tick))
            for name, per in reads.items():
                # Only the lookup is a miss after a buy; the reference's search miss has no counterpart here.
                ref = reference.MISS_AFTER_INVALIDATION["lookup"] if name == invalidation.READS["lookup"][1] else None
                miss_rows += [{"cache": cache_label(cache), "read": name, "tier": t, **f,
                               "reference_client_mean": ref if t == "client" else None} for t, f in per.items()]
    for label, per in tiers.items():
        ref = reference.TABLE_4_INVALIDATION.get(label, {})
        buy_rows += [{"invalidation": label, "tier": t, **f, "reference_mean": ref.get(t)} for t, f in per.items()]
    results.figure("buys", buy_rows, ["with and without alternate buy by buy, on two clusters run side by side"])
    results.figure("misses", miss_rows, ["a buy invalidates its book's lookup only: search results carry no stock"])
    table = Table(title=f"{requests} sequential buys per cluster, alternating, ms: mean / p99 (reference mean, Table 4)")
    table.add_column("invalidation")
    for tier in TIERS:
        table.add_column(tier, justify="right")
    for label in dict.fromkeys(r["invalidation"] for r in buy_rows):
        cells = {r["tier"]: r for r in buy_rows if r["invalidation"] == label}
        table.add_row(label, *(f"{fmt(c['mean'])} / {fmt(c['p99'])} ({fmt(c['reference_mean'])})" if (c := cells.get(t)) else "-" for t in TIERS))
    out.print(table)
    with_labels = list(dict.fromkeys(r["invalidation"] for r in buy_rows))
    charts.grouped_bars(results.chart_path("buys"), "Mean time of a buy per tier, with and without invalidation", with_labels,
                        {t: [next((r["mean"] for r in buy_rows if r["invalidation"] == lb and r["tier"] == t), 0.0)
                             for lb in with_labels] for t in TIERS}, "ms")
    reads_table = Table(title="Reads repeated and right after a buy, client ms: mean / p99 (reference: its miss after an invalidation)")
    reads_table.add_column("cache")
    reads_table.add_column("read")
    reads_table.add_column("client", justify="right")
    reads_table.add_column("frontend", justify="right")
    for r in miss_rows:
        if r["tier"] == "client":
            front = next((x for x in miss_rows if x["tier"] == "frontend" and x["read"] == r["read"] and x["cache"] == r["cache"]), None)
            reads_table.add_row(r["cache"], r["read"], f"{fmt(r['mean'])} / {fmt(r['p99'])} ({fmt(r['reference_client_mean'])})",
                                fmt(front["mean"]) if front else "-")
    out.print(reads_table)
    names = list(dict.fromkeys(r["read"] for r in miss_rows))
    charts.grouped_bars(results.chart_path("misses"), "Client time of a read: repeated vs right after a buy",
                        names, {c: [next((r["mean"] for r in miss_rows if r["cache"] == c and r["read"] == n and r["tier"] == "client"), 0.0)
                                    for n in names] for c in dict.fromkeys(r["cache"] for r in miss_rows)}, "ms")
    done(results)


# -- throughput --------------------------------------------------------------------------------------


def _numbers(text: str, kind: Callable[[str], Any]) -> list[Any]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None
    if any(v <= 0 for v in values):
        raise typer.BadParameter(f"{text!r}: every value must be above 0")
    return values


def _mix(text: str) -> Mix:
    try:
        return Mix.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@bench.command("throughput")
def throughput_command(
    mix: MixText = "lookup",
    concurrency: Annotated[str, typer.Option("--concurrency", help="Closed-loop clients per point.")] = "1,2,4,8,16,32,64,128",
    rates: Annotated[str, typer.Option("--rates", help="Open-loop arrival rates, requests/s.")] = "50,100,200,400",
    seconds: Seconds = 5.0, max_requests: MaxRequests = 20_000,
    url: Url = None, spawn: Spawn = False, token: Token = None, control_url: ControlUrl = None,
    config: ConfigFile = None, out_dir: OutDir = OUT, replicas: Replicas = 3,
) -> None:
    """Requests/s and p50/p99 against concurrency (closed loop) and arrival rate (open loop)."""
    chosen, levels, arrivals = _mix(mix), _numbers(concurrency, int), _numbers(rates, float)
    where = Where(url, spawn, token, control_url, config, replicas)
    results = Results(out_dir, "throughput", {**where.settings(), "mix": chosen.weights, "concurrency": levels,
                                              "rates": arrivals, "seconds": seconds, "max_requests": max_requests})
    total = len(levels) * max_requests + int(sum(arrivals) * seconds)
    with where.target() as target:
        rows = measured(progress_bar(total, f"throughput, {chosen.label}"), lambda tick: throughput.run(
            target, chosen, concurrency=levels, rates=arrivals, seconds=seconds, max_requests=max_requests, tick=tick))
    results.figure("throughput", rows, [f"mix {chosen.label}"])
    table = Table(title=f"Throughput, {chosen.label}, {seconds:g} s per point")
    for col in ("loop", "clients / rate", "requests", "answered/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["loop"], str(r["concurrency"] or f"{r['rate']:g}/s"), str(r["requests"]), fmt(r["ok_per_s"]),
                      fmt(r["p50_ms"]), fmt(r["p99_ms"]), str(r["errors"]))
    out.print(table)
    closed = [r for r in rows if r["loop"] == "closed"]
    opened = [r for r in rows if r["loop"] == "open"]
    if closed:
        charts.lines(results.chart_path("throughput-closed"), f"Closed loop, {chosen.label}", "clients", "answered/s",
                     {"answered/s": ([r["concurrency"] for r in closed], [r["ok_per_s"] for r in closed])}, log_x=True)
        charts.lines(results.chart_path("latency-closed"), f"Closed loop, {chosen.label}", "clients", "ms",
                     {"p50": ([r["concurrency"] for r in closed], [r["p50_ms"] for r in closed]),
                      "p99": ([r["concurrency"] for r in closed], [r["p99_ms"] for r in closed])}, log_x=True)
    if opened:
        charts.lines(results.chart_path("latency-open"), f"Open loop, {chosen.label}", "arrival rate, requests/s", "ms",
                     {"p50": ([r["rate"] for r in opened], [r["p50_ms"] for r in opened]),
                      "p99": ([r["rate"] for r in opened], [r["p99_ms"] for r in opened])})
    done(results)


# -- failover ----------------------------------------------------------------------------------------


@bench.command("failover")
def failover_command(
    rate: Annotated[float, typer.Option("--rate", min=1, max=2000, help="Open-loop requests/s during the run.")] = 50.0,
    seconds: Annotated[float, typer.Option("--seconds", min=2, max=3600, help="Length of the run; kills at 1/4, 2/4, 3/4.")] = 40.0,
    mix: MixText = "50/50",
    url: Url = None, spawn: Spawn = False, token: Token = None, control_url: ControlUrl = None,
    config: ConfigFile = None, out_dir: OutDir = OUT, replicas: Replicas = 3,
) -> None:
    """Steady load while the catalog leader, an order follower and the order leader are killed (kill -9)."""
    chosen = _mix(mix)
    if replicas < 3 and url is None:
        raise typer.BadParameter("failover needs at least 3 replicas per group", param_hint="--replicas")
    where = Where(url, spawn, token, control_url, config, replicas)
    results = Results(out_dir, "failover", {**where.settings(), "rate": rate, "seconds": seconds, "mix": chosen.weights})
    with where.target() as target:
        found = measured(progress_bar(int(rate * seconds), "failover"),
                         lambda tick: failover.run(target, rate=rate, seconds=seconds, mix=chosen, tick=tick))
    bins = failover.timeline(found)
    recovered = failover.recoveries(found)
    results.figure("timeline", bins, [f"{failover.BIN * 1000:.0f} ms bins by answer time"])
    results.figure("recovery", recovered, [failover.__doc__.split("\n\n")[1].replace("\n", " ")])
    charts.timeline(results.chart_path("failover"), f"{chosen.label} at {rate:g}/s; kill -9 marked",
                    [b["t"] for b in bins], {"answered per 100 ms": [b["ok"] for b in bins], "errors per 100 ms": [b["errors"] for b in bins]},
                    [(k.at, f"kill {k.node} ({k.role})") for k in found["kills"]], "requests")
    table = Table(title=f"Failover: {chosen.label} at {rate:g} requests/s for {seconds:g} s")
    for col in ("kill at s", "node (term)", "role", "next leader (term), after s", "answers", "errors", "slow",
                "time to recover s", "writes paused s"):
        table.add_column(col, justify="right")
    for r in recovered:
        elected = f"{r['new_leader']} ({r['new_term']}), {r['elected_after_s']:.2f}" if r["new_leader"] else "-"
        table.add_row(f"{r['kill_at_s']:.1f}", f"{r['node']} ({r['term']})", r["role"], elected, str(r["requests"]),
                      str(r["errors"]), str(r["slow"]), f"{r['recover_s']:.2f}", fmt(r["writes_paused_s"]))
    out.print(table)
    out.print(f"role: as the node itself reported just before its kill; answers counted by when they came; slow = answered "
              f"after more than {recovered[0]['slow_threshold_ms']:.0f} ms; writes paused = longest time without an answered "
              f"buy; dropped (too many in flight): {found['dropped']}" if recovered else "no kills were made")
    done(results)


# -- scale -------------------------------------------------------------------------------------------


@bench.command("scale")
def scale_command(
    frontends: Annotated[str, typer.Option("--frontends", help="Frontend counts for the lookup load.")] = "1,2,4",
    replica_counts: Annotated[str, typer.Option("--replica-counts", help="Replicas per group for the buy load (odd).")] = "1,3,5",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=1024, help="Closed-loop clients.")] = 32,
    seconds: Seconds = 5.0, max_requests: MaxRequests = 20_000,
    spawn: Annotated[bool, typer.Option("--spawn", help="Always: each point runs on a cluster of its own.")] = True,
    out_dir: OutDir = OUT,
) -> None:
    """Lookups/s through 1, 2 and 4 frontends and buys/s with 1, 3 and 5 replicas (each a spawned cluster)."""
    fronts, groups = _numbers(frontends, int), _numbers(replica_counts, int)
    if any(n % 2 == 0 for n in groups):
        raise typer.BadParameter("replica counts must be odd", param_hint="--replica-counts")
    where = Where(None, True, None, None, None, 3)
    results = Results(out_dir, "scale", {"frontends": fronts, "replica_counts": groups, "concurrency": concurrency,
                                         "seconds": seconds, "max_requests": max_requests})
    rows: list[dict[str, Any]] = []
    plan = [("lookup", f, 3) for f in fronts] + [("buy", 1, r) for r in groups]
    for kind, f, r in plan:
        with where.target(replicas=r, frontends=f) as target:
            row = measured(progress_bar(max_requests, f"{kind}s, {f} frontend(s), {r} replica(s)"), lambda tick: scale.point(
                target, Mix.parse(kind), concurrency=concurrency, seconds=seconds, max_requests=max_requests, tick=tick))
        rows.append({"load": kind, "frontends": f, "replicas": r, **row})
    for kind in ("lookup", "buy"):
        base = next((x["ok_per_s"] for x in rows if x["load"] == kind), 0.0)
        for x in rows:
            if x["load"] == kind:
                x["ratio_to_first"] = x["ok_per_s"] / base if base else float("nan")
    results.figure("scale", rows, [f"{concurrency} closed-loop clients per point"])
    table = Table(title=f"Scale: {concurrency} closed-loop clients, {seconds:g} s per point")
    for col in ("load", "frontends", "replicas", "answered/s", "ratio", "p50 ms", "p99 ms", "errors", "driver CPU"):
        table.add_column(col, justify="right")
    for x in rows:
        table.add_row(x["load"], str(x["frontends"]), str(x["replicas"]), fmt(x["ok_per_s"]), fmt(x["ratio_to_first"]),
                      fmt(x["p50_ms"]), fmt(x["p99_ms"]), str(x["errors"]), f"{x['driver_cpu']:.0%}")
    out.print(table)
    out.print(f"driver CPU: the share of one core the load generator (this one Python process) used, of {os.cpu_count()} cores; "
              "near 100% it, not the cluster, is the limit")
    look = [x for x in rows if x["load"] == "lookup"]
    buys = [x for x in rows if x["load"] == "buy"]
    charts.lines(results.chart_path("scale"), "What more frontends and replicas do", "frontends (lookups) / replicas (buys)", "answered/s",
                 {"lookups vs frontends": ([x["frontends"] for x in look], [x["ok_per_s"] for x in look]),
                  "buys vs replicas": ([x["replicas"] for x in buys], [x["ok_per_s"] for x in buys])})
    done(results)
