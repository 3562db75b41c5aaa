"""PNG charts (matplotlib, no display needed): grouped bars per tier, lines, and a timeline with events."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def _plt() -> Any:
    """pyplot on the Agg backend, imported on first use so `pygmy --help` does not pay for matplotlib."""
    import matplotlib

    matplotlib.use("Agg")  # files only: a benchmark must run on a machine without a display
    import matplotlib.pyplot as plt

    return plt


def grouped_bars(path: Path, title: str, groups: Sequence[str], series: dict[str, Sequence[float]], ylabel: str) -> None:
    """One group of bars per method, one bar per tier (the reference's Figure 2)."""
    fig, ax = _plt().subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        ax.bar([g + i * width for g in range(len(groups))], values, width, label=label)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def lines(path: Path, title: str, xlabel: str, ylabel: str, series: dict[str, tuple[Sequence[float], Sequence[float]]],
          *, log_x: bool = False) -> None:
    fig, ax = _plt().subplots(figsize=(8, 4.5))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def timeline(path: Path, title: str, times: Sequence[float], series: dict[str, Sequence[float]],
             events: Sequence[tuple[float, str]], ylabel: str) -> None:
    """Counts per time bin, with a dashed vertical line and a label at each event (a kill)."""
    fig, ax = _plt().subplots(figsize=(10, 4.5))
    for label, values in series.items():
        ax.plot(times, values, label=label, drawstyle="steps-post")
    top = max((max(v) for v in series.values() if len(v)), default=1) or 1
    for at, label in events:
        ax.axvline(at, color="red", linestyle="--", linewidth=1)
        # Inside the plot, beside its line, so labels never run into the title or each other.
        ax.text(at, top * 1.15, f" {label}", rotation=90, fontsize=8, color="red", va="top")
    ax.set_ylim(0, top * 1.2)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
