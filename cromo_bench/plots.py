"""Plots: the accuracy matrix of one run, its per-task accuracy curves, and the method comparison chart.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no global state, no display).
The accuracy matrix follows evaluate.py: R[i][j] is the accuracy on task j after training task i (j <= i);
missing entries (None) are drawn blank.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

Matrix = Sequence[Sequence[float | None]] | np.ndarray
BAR_KEYS = ("split", "ssl", "memory", "benchmark_version")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def to_matrix(R: Matrix) -> np.ndarray:
    """A square float array (T, T) with NaN where R has None or a row is short."""
    rows = [list(r) for r in R]
    T = len(rows)
    out = np.full((T, T), np.nan)
    for i, row in enumerate(rows):
        for j, value in enumerate(row[:T]):
            if value is not None:
                out[i, j] = float(value)
    return out


def plot_accuracy_matrix(R: Matrix, path: str | Path, title: str = "Accuracy matrix") -> Path:
    """Heatmap of R (rows: after training task i, columns: evaluated on task j), values written in cells."""
    M = to_matrix(R)  # (T, T)
    T = M.shape[0]
    fig = _figure(1.6 + 0.55 * max(T, 4), 1.2 + 0.5 * max(T, 4))
    ax = fig.add_subplot()
    fractions = bool(np.nanmax(M, initial=0.0) <= 1.0)
    image = ax.imshow(np.ma.masked_invalid(M), cmap="viridis", vmin=0.0 if fractions else None,
                      vmax=1.0 if fractions else None)
    fig.colorbar(image, ax=ax, shrink=0.8, label="accuracy")
    ticks = list(range(T))
    ax.set_xticks(ticks, [str(t + 1) for t in ticks])
    ax.set_yticks(ticks, [str(t + 1) for t in ticks])
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    ax.set_title(title)
    if T <= 12:
        _annotate(ax, M, 0.5 if fractions else float(np.nanmean(M)))
    return _save(fig, path)


def _annotate(ax: Axes, M: np.ndarray, threshold: float) -> None:
    for (i, j), value in np.ndenumerate(M):
        if not math.isnan(value):
            color = "black" if value > threshold else "white"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color=color)


def plot_task_curves(R: Matrix, path: str | Path, title: str = "Accuracy per task") -> Path:
    """One line per task j: its accuracy after each training task i >= j; dashed: the mean over seen tasks."""
    M = to_matrix(R)  # (T, T)
    T = M.shape[0]
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    steps = np.arange(1, T + 1)
    for j in range(T):
        ax.plot(steps[j:], M[j:, j], marker="o", markersize=3, linewidth=1.2, label=f"task {j + 1}")
    seen = [np.nanmean(M[i, : i + 1]) if np.any(~np.isnan(M[i, : i + 1])) else np.nan for i in range(T)]
    ax.plot(steps, seen, color="black", linestyle="--", linewidth=2.0, label="mean over seen tasks")
    ax.set_xticks(steps)
    ax.set_xlabel("after training task")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if T <= 12:
        ax.legend(fontsize=7, ncols=2 if T > 6 else 1, loc="best")
    return _save(fig, path)


def method_bars_png(cells: pd.DataFrame, metrics: Sequence[str] | None = None) -> bytes:
    """The method comparison chart (see plot_method_bars) as PNG bytes, for embedding."""
    fig = _method_bars(cells, metrics)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_method_bars(cells: pd.DataFrame, path: str | Path, metrics: Sequence[str] | None = None) -> Path:
    """Grouped bars of each metric's mean per method, error bars = std; one panel per group.

    `cells` is Leaderboard.cells (columns split, ssl, memory, benchmark_version, method, metric, mean, std).
    """
    return _save(_method_bars(cells, metrics), path)


def _method_bars(cells: pd.DataFrame, metrics: Sequence[str] | None) -> Figure:
    metrics = list(metrics) if metrics else list(dict.fromkeys(cells["metric"]))
    groups = list(cells.groupby(list(BAR_KEYS), sort=False))
    n_methods = max((g["method"].nunique() for _, g in groups), default=1)
    ncols = min(len(groups), 2 if n_methods > 4 else 3) or 1
    nrows = math.ceil(len(groups) / ncols) or 1
    fig = _figure(ncols * max(4.5, 1.1 + 0.9 * n_methods), nrows * 3.6)
    for k, (key, group) in enumerate(groups):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        _bars(ax, group, metrics)
        split, ssl, memory, version = key
        ax.set_title(f"{split} · {ssl} · memory {memory} · v{version}", fontsize=9)
        if k == 0:
            handles, labels = ax.get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside upper center", ncols=len(metrics), fontsize=9)
    return fig


def _bars(ax: Axes, group: pd.DataFrame, metrics: list[str]) -> None:
    methods = list(dict.fromkeys(group["method"]))
    x = np.arange(len(methods))
    width = 0.8 / max(len(metrics), 1)
    table = group.set_index(["method", "metric"])
    for k, metric in enumerate(metrics):
        means = [table["mean"].get((m, metric), np.nan) for m in methods]
        stds = np.nan_to_num([table["std"].get((m, metric), np.nan) for m in methods])
        ax.bar(x + (k - (len(metrics) - 1) / 2) * width, means, width, yerr=stds,
               capsize=3, label=metric)
    pad = max(0.0, (3 - len(methods)) / 2)  # few methods: keep bars narrow and centred
    ax.set_xlim(-0.6 - pad, len(methods) - 0.4 + pad)
    tilted = len(methods) > 4
    ax.set_xticks(x, methods, rotation=30 if tilted else 0, ha="right" if tilted else "center")
    ax.grid(axis="y", alpha=0.3)
