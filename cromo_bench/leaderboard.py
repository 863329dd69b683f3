"""The leaderboard: MLflow runs -> clean runs -> one cell per (group, method, metric) with its tests -> text.

A group is (split, ssl, memory, benchmark_version): versions are never pooled. Within a group every method is
tested against the baseline and against the best method of each metric (`stats.compare`), and all p-values of
one table are adjusted together (Holm by default). `render_table` is `cromo-bench table`; `start_ui` is
`cromo-bench ui`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cromo_bench import stats
from cromo_bench.errors import CromoError, unknown_name
from cromo_bench.tracking import RUN_COLUMNS, load_runs, tracking_uri

GROUP_KEYS = ("split", "ssl", "memory", "benchmark_version")
ROW_KEYS = (*GROUP_KEYS, "method")
DEFAULT_METRICS = ("LA", "TP", "WP")
FORMATS = ("terminal", "markdown", "latex", "csv", "html")
MAX_LISTED = 20  # run ids listed per note before "and k more"


@dataclass(frozen=True)
class Settings:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    baseline: str = "finetune"
    test: str = "auto"
    alpha: float = 0.05
    correction: str = "holm"
    bootstrap: bool = False
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.test not in stats.TESTS:
            raise unknown_name("test", self.test, stats.TESTS)
        if self.correction not in stats.CORRECTIONS:
            raise unknown_name("correction", self.correction, stats.CORRECTIONS)
        if not 0.0 < self.alpha < 1.0:
            raise CromoError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if not self.metrics:
            raise CromoError("pass at least one --metric")


@dataclass(frozen=True)
class Leaderboard:
    """`cells`: one row per (group, method, metric), in display order; `notes`: what was dropped and why."""

    cells: pd.DataFrame
    notes: tuple[str, ...]
    settings: Settings
    n_tests: int


def higher_is_better(metric: str) -> bool:
    """Accuracies are better high; forgetting and losses are better low."""
    name = metric.lower()
    return not ("forget" in name or "loss" in name)


def render_table(uri: str | None = None, experiment: str | None = None, split: str | None = None,
                 methods: Sequence[str] = (), ssls: Sequence[str] = (), memories: Sequence[str] = (),
                 metrics: Sequence[str] = DEFAULT_METRICS, baseline: str = "finetune", test: str = "auto",
                 alpha: float = 0.05, correction: str = "holm", bootstrap: bool = False,
                 fmt: str = "terminal", output: str | Path | None = None,
                 plot: str | Path | None = None) -> str:
    """Load, clean, aggregate, test and render the runs; write `output` / `plot` when given."""
    from cromo_bench import plots, tables

    settings = Settings(tuple(metrics), baseline, test, alpha, correction, bootstrap)
    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS)
    runs = load_runs(uri, [experiment] if experiment else None, split)
    if runs.empty:
        where = f" for split '{split}'" if split else ""
        raise CromoError(f"no runs found{where} in the tracking store (experiment: {experiment or 'all'})")
    runs = select_runs(runs, methods, ssls, memories, baseline)
    board = build_leaderboard(runs, settings)
    images = {"Mean ± std per method": plots.method_bars_png(board.cells, settings.metrics)} \
        if fmt == "html" else None
    text = tables.render(board, fmt, images)
    if plot:
        plots.plot_method_bars(board.cells, plot, settings.metrics)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    return text


def select_runs(runs: pd.DataFrame, methods: Sequence[str] = (), ssls: Sequence[str] = (),
                memories: Sequence[str] = (), baseline: str | None = None) -> pd.DataFrame:
    """Keep the requested methods (plus the baseline), objectives and memory budgets; unknown names error."""
    for column, wanted in (("method", methods), ("ssl", ssls), ("memory", memories)):
        if not wanted:
            continue
        present = set(runs[column].dropna().astype(str))
        for name in wanted:
            if name not in present:
                raise unknown_name(column, name, present)
        keep = {*wanted, baseline} if column == "method" and baseline else set(wanted)
        runs = runs[runs[column].astype(str).isin(keep)]
    return runs


def build_leaderboard(runs: pd.DataFrame, settings: Settings) -> Leaderboard:
    """Clean the runs (load_runs' frame), aggregate every metric and run the tests of one table."""
    missing = [m for m in settings.metrics if m not in runs.columns]
    if missing:
        available = [c for c in runs.columns if c not in RUN_COLUMNS]
        raise unknown_name("metric", missing[0], available)
    clean, notes = clean_runs(runs)
    if clean.empty:
        raise CromoError("no FINISHED runs to tabulate. " + " ".join(notes))
    cells, comparisons = aggregate(clean, settings)
    notes += comparison_notes(comparisons)
    notes += version_notes(clean)
    n_tests = sum(c.p is not None for c in comparisons.values())
    return Leaderboard(cells, tuple(notes), settings, n_tests)


def clean_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep FINISHED runs with cromo tags and one run per seed (the latest); say what was dropped."""
    notes: list[str] = []
    runs = runs.copy()
    untagged = runs["method"].isna() | runs["seed"].isna()
    if untagged.any():
        notes.append(f"Ignored {int(untagged.sum())} run(s) without cromo.method / cromo.seed tags "
                     f"(e.g. sweep parents): {_ids(runs[untagged])}.")
    runs = runs[~untagged]
    if "overrides" in runs:  # runs with other settings (--epochs, --set, a preset) are a group of their own
        changed = runs["overrides"].astype(object).fillna("").astype(str)  # all-NaN columns are float64
        runs["split"] = [f"{s} [{o}]" if o else s for s, o in zip(runs["split"], changed, strict=True)]
        if (changed != "").any():
            notes.append("Runs whose settings differ from their benchmark's (--epochs, --set, --preset) form "
                         "separate groups, labelled split [settings].")
    for column in (*ROW_KEYS, "seed"):
        runs[column] = runs[column].fillna("?").astype(str)
    unfinished = runs["status"] != "FINISHED"
    if unfinished.any():
        parts = [f"{status}: {_describe(g)}" for status, g in runs[unfinished].groupby("status")]
        notes.append(f"Dropped {int(unfinished.sum())} run(s) that did not finish — {'; '.join(parts)}.")
    runs = runs[~unfinished].sort_values("start_time", kind="stable")
    duplicate = runs.duplicated([*ROW_KEYS, "seed"], keep="last")
    if duplicate.any():
        notes.append(f"Duplicate seeds: kept the latest run per (group, method, seed) and dropped "
                     f"{int(duplicate.sum())} older run(s): {_describe(runs[duplicate])}.")
    return runs[~duplicate], notes


def aggregate(runs: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, dict[tuple, stats.Comparison]]:
    """Cells (one row per group, method, metric) with summaries, marks and adjusted p-values."""
    rows: list[dict[str, Any]] = []
    comparisons: dict[tuple, stats.Comparison] = {}
    for key, group in runs.groupby(list(GROUP_KEYS), sort=False):
        for metric in settings.metrics:
            group_key = dict(zip(GROUP_KEYS, key, strict=True))
            rows += _metric_cells(group_key, group, metric, settings, comparisons)
    if not rows:
        raise CromoError(f"no FINISHED run logged any of the metrics {', '.join(settings.metrics)}")
    keys = list(comparisons)
    adjusted = dict(zip(keys, stats.adjust([comparisons[k].p for k in keys], settings.correction),
                        strict=True))
    for row in rows:
        for ref in ("best", "baseline"):
            ckey = row.pop(f"_{ref}_key")
            comp = comparisons.get(ckey) if ckey else None
            row[f"test_vs_{ref}"] = comp.test if comp else None
            row[f"statistic_vs_{ref}"] = _oriented(comp, row["method"] == ckey[-2]) if comp else None
            row[f"p_vs_{ref}"] = comp.p if comp else None
            row[f"p_adj_vs_{ref}"] = adjusted[ckey] if comp else None
        row.update(_marks(row, settings))
    return _order(pd.DataFrame(rows), settings), comparisons


def _metric_cells(group_key: dict[str, str], group: pd.DataFrame, metric: str, settings: Settings,
                  comparisons: dict[tuple, stats.Comparison]) -> list[dict[str, Any]]:
    values = {m: _seed_values(g, metric) for m, g in group.groupby("method", sort=True)}
    values = {m: v for m, v in values.items() if v}
    summaries = {m: stats.summarize(list(v.values())) for m, v in values.items()}
    sign = 1.0 if higher_is_better(metric) else -1.0
    best = max(summaries, key=lambda m: sign * summaries[m].mean) if summaries else None
    baseline = settings.baseline if settings.baseline in values else None
    rows = []
    for method, s in summaries.items():
        row: dict[str, Any] = {**group_key, "method": method, "metric": metric, "n": s.n, "mean": s.mean,
                               "std": s.std, "best_method": best, "baseline": baseline,
                               "diff_vs_baseline": s.mean - summaries[baseline].mean if baseline else None}
        if settings.bootstrap:
            ci = stats.bootstrap_ci(list(values[method].values()), settings.confidence)
            row["ci_low"], row["ci_high"] = ci if ci else (None, None)
        for label, ref in (("best", best), ("baseline", baseline)):
            pair = None if ref is None or ref == method else tuple(sorted((method, ref)))
            ckey = (*group_key.values(), metric, *pair) if pair else None  # A vs B is B vs A: one test
            if ckey and ckey not in comparisons:
                comparisons[ckey] = stats.compare(values[ckey[-2]], values[ckey[-1]], settings.test)
            row[f"_{label}_key"] = ckey
        rows.append(row)
    return rows


def _oriented(comp: stats.Comparison, forward: bool) -> float | None:
    """t statistics of the row's method minus its reference (the test ran on the sorted pair)."""
    if comp.statistic is None or forward or comp.test not in ("paired", "welch"):
        return comp.statistic
    return -comp.statistic


def _seed_values(runs: pd.DataFrame, metric: str) -> dict[str, float]:
    present = runs[runs[metric].notna()]
    return dict(zip(present["seed"], present[metric].astype(float), strict=True))


def _marks(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """is_best; tied_with_best (tested and not significantly different); vs_baseline in {-1, 0, +1}."""
    p_best, p_base = row["p_adj_vs_best"], row["p_adj_vs_baseline"]
    tied = p_best is not None and p_best >= settings.alpha
    direction = 0
    if p_base is not None and p_base < settings.alpha:
        better = (row["diff_vs_baseline"] > 0) == higher_is_better(row["metric"])
        direction = 1 if better else -1
    return {"is_best": row["method"] == row["best_method"], "tied_with_best": tied, "vs_baseline": direction}


def _order(cells: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Groups in natural order; within a group, methods by the first metric's mean, best first."""
    first = cells[cells["metric"] == settings.metrics[0]][[*ROW_KEYS, "mean"]]
    sign = -1.0 if higher_is_better(settings.metrics[0]) else 1.0
    cells = cells.merge(first.assign(_rank=sign * first["mean"]).drop(columns="mean"), on=list(ROW_KEYS),
                        how="left")
    order = {f"_g{i}": _natural_key(cells[k]) for i, k in enumerate(GROUP_KEYS)}
    cells = cells.assign(**order, _metric=cells["metric"].map(settings.metrics.index))
    cells = cells.sort_values([*order, "_rank", "method", "_metric"], na_position="last", kind="stable")
    return cells.drop(columns=[c for c in cells.columns if c.startswith("_")]).reset_index(drop=True)


def _natural_key(column: pd.Series) -> pd.Series:
    """Numbers sort numerically (memory 500 < 2000), other strings after them, alphabetically."""

    def key(value: str) -> tuple[int, float, str]:
        try:
            return 0, float(value), value
        except ValueError:
            return 1, 0.0, value

    return column.map({v: i for i, v in enumerate(sorted(set(column), key=key))})


def comparison_notes(comparisons: dict[tuple, stats.Comparison]) -> list[str]:
    """One note per unusual test (Welch fallback, no test, pairing over a subset, identical values)."""
    by_pair: dict[tuple, list[str]] = {}
    for (*group, metric, method, ref), comp in comparisons.items():
        if comp.note:
            by_pair.setdefault((tuple(group), method, ref, comp.note), []).append(metric)
    lines = [f"{method} vs {ref} [{_group_label(group)}] ({', '.join(metrics)}): {note}."
             for (group, method, ref, note), metrics in by_pair.items()]
    return lines[:MAX_LISTED] + ([f"… and {len(lines) - MAX_LISTED} more test notes."]
                                 if len(lines) > MAX_LISTED else [])


def version_notes(runs: pd.DataFrame) -> list[str]:
    versions = sorted(set(runs["benchmark_version"]))
    if len(versions) < 2:
        return []
    return [f"Benchmark versions {', '.join(versions)} are reported as separate groups, never pooled."]


def _group_label(group: Sequence[str]) -> str:
    split, ssl, memory, version = group
    return f"{split} · {ssl} · memory {memory} · v{version}"


def _ids(runs: pd.DataFrame) -> str:
    ids = [str(r)[:8] for r in runs["run_id"]]
    more = f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else ""
    return ", ".join(ids[:MAX_LISTED]) + more


def _describe(runs: pd.DataFrame) -> str:
    """Short ids with what they were: 'ab12cd34 (er, seed 2, barlow · memory 500 · v1)'."""
    items = [f"{str(r.run_id)[:8]} ({r.method}, seed {r.seed}, "
             f"{_group_label([r.split, r.ssl, r.memory, r.benchmark_version])})"
             for r in runs.itertuples()]
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def start_ui(uri: str | None = None, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Run `mlflow ui` on the tracking store until interrupted; returns its exit status."""
    resolved = tracking_uri(uri)
    if resolved.startswith("sqlite:///") and not Path(resolved[len("sqlite:///"):]).exists():
        raise CromoError(f"no tracking store at '{resolved}' (run `cromo-bench run` first, "
                         "or pass --tracking-uri)")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", resolved,
           "--host", host, "--port", str(port)]
    try:
        return subprocess.run(cmd, check=False).returncode
    except KeyboardInterrupt:
        return 0
