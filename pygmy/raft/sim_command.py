"""`pygmy sim`: run the deterministic Raft simulation over many seeds, and replay any one of them.

Each failing seed is printed with the one-line command that replays it with a step-by-step trace.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pygmy.raft.sim import SimConfig, SimResult, run_seed
from pygmy.raft.sim.bugs import KNOWN_BUGS, planted_bugs

_DEFAULT_TICKS = SimConfig().ticks


def sim(
    seeds: Annotated[int, typer.Option(help="How many seeds to run.")] = 200,
    nodes: Annotated[int, typer.Option(help="Cluster size (3 to 7).", min=1, max=9)] = 5,
    start_seed: Annotated[int, typer.Option(help="First seed; runs start_seed .. start_seed + seeds - 1.")] = 0,
    replay: Annotated[int | None, typer.Option(help="Run only this seed (add --trace to see every step).")] = None,
    trace: Annotated[bool, typer.Option(help="Print every simulated step (with --replay).")] = False,
    steps: Annotated[int, typer.Option(help="Ticks of faults per run, before the liveness phase.")] = _DEFAULT_TICKS,
    bug: Annotated[list[str] | None, typer.Option(help=f"Plant a known bug: {', '.join(sorted(KNOWN_BUGS))}.")] = None,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first failing seed.")] = False,
) -> None:
    """Run the Raft simulation: faults, crashes and partitions, checked for safety, liveness and linearizability."""
    console = Console()
    try:
        bugs = planted_bugs(bug or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    config = SimConfig(nodes=nodes, ticks=steps, bugs=bugs)
    if replay is not None:
        _replay(console, replay, config, trace)
        return
    started = time.perf_counter()
    results = _sweep(range(start_seed, start_seed + seeds), config, fail_fast)
    elapsed = time.perf_counter() - started
    console.print(_summary(results, elapsed, config))
    failures = [r for r in results if not r.ok]
    for result in failures:
        console.print(f"[red]seed {result.seed} failed ({result.kind}):[/red] {_first_line(result.failure)}", soft_wrap=True)
        console.print(f"  replay: [bold]{_replay_command(result.seed, config)}[/bold]", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


def _sweep(seeds: range, config: SimConfig, fail_fast: bool) -> list[SimResult]:
    results: list[SimResult] = []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task(f"simulating {config.nodes} nodes", total=len(seeds))
        failed = 0
        for seed in seeds:
            result = run_seed(seed, config)
            results.append(result)
            failed += not result.ok
            progress.update(task, advance=1, description=f"simulating {config.nodes} nodes, {failed} failed")
            if failed and fail_fast:
                break
    return results


def _replay(console: Console, seed: int, config: SimConfig, trace: bool) -> None:
    result = run_seed(seed, config, trace=(lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)) if trace else None)
    console.print(_summary([result], None, config))
    if not result.ok:
        console.print(f"[red]seed {seed} failed ({result.kind}):[/red]")
        console.print(result.failure or "", markup=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]seed {seed} passed[/green]")


def _summary(results: list[SimResult], elapsed: float | None, config: SimConfig) -> Table:
    table = Table(title=f"Raft simulation: {config.nodes} nodes, {config.ticks} ticks of faults" + (f", bugs {sorted(config.bugs)}" if config.bugs else ""))
    table.add_column("measure")
    table.add_column("value", justify="right")
    passed = sum(r.ok for r in results)
    table.add_row("seeds", str(len(results)))
    table.add_row("passed", f"[green]{passed}[/green]")
    table.add_row("failed", f"[red]{len(results) - passed}[/red]" if passed < len(results) else "0")
    for kind, count in sorted(Counter(r.kind for r in results if not r.ok).items()):
        table.add_row(f"  {kind}", str(count))
    if elapsed is not None:
        table.add_row("seeds/s", f"{len(results) / elapsed:.1f}" if elapsed else "-")
    count = max(len(results), 1)
    table.add_row("events per seed", f"{sum(r.events for r in results) / count:.0f}")
    table.add_row("terms with a leader per seed", f"{sum(r.terms for r in results) / count:.1f}")
    table.add_row("committed entries per seed", f"{sum(r.committed for r in results) / count:.0f}")
    table.add_row("client operations per seed", f"{sum(r.operations for r in results) / count:.0f}")
    table.add_row("  of which outcome unknown", f"{sum(r.unknown for r in results) / count:.1f}")
    recoveries = sorted(r.recovery_ticks for r in results if r.recovery_ticks is not None)
    if recoveries:
        median, worst = recoveries[len(recoveries) // 2], recoveries[-1]
        table.add_row("ticks to commit after faults stop", f"median {median:.0f}, max {worst:.0f}")
    return table


def _replay_command(seed: int, config: SimConfig) -> str:
    command = f"pygmy sim --replay {seed} --nodes {config.nodes} --trace"
    if config.ticks != _DEFAULT_TICKS:
        command += f" --steps {config.ticks}"
    for name in sorted(config.bugs):
        command += f" --bug {name}"
    return command


def _first_line(text: str | None) -> str:
    return (text or "").splitlines()[0] if text else ""
