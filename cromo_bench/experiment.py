"""From names to a resolved RunConfig, and one tracked run: the library behind `cromo-bench run`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from cromo_bench.benchmark import BenchmarkSpec, resolve_config
from cromo_bench.config import RunConfig, parse_overrides
from cromo_bench.registry import lookup


def build_config(method: str, ssl: str, split: str, *, flags: Mapping[str, Any] | None = None,
                 sets: list[str] | None = None, preset: str | None = None) -> RunConfig:
    """Look up the three names (failing with suggestions) and resolve the run's configuration. A `preset`
    (cromo_bench.presets) applies above the benchmark and below the method's defaults; `extra` logs it."""
    from cromo_bench.presets import preset_values

    method_cls = lookup("method", method)
    objective_cls = lookup("objective", ssl)
    spec: BenchmarkSpec = lookup("benchmark", split)
    preset_vals = preset_values(preset, ssl, method) if preset else {}
    method_defaults = {**preset_vals, **getattr(method_cls, "defaults", {})}
    cfg = resolve_config(spec, method, ssl, objective_defaults=objective_cls.defaults,
                         method_defaults=method_defaults, flags=flags or {}, overrides=parse_overrides(sets or []))
    standard = resolve_config(spec, method, ssl, objective_defaults=objective_cls.defaults,
                              method_defaults=method_defaults)
    extra = ((("preset", preset),) if preset else ()) + (("overrides", settings_label(cfg, standard, preset)),)
    return dataclasses.replace(cfg, extra=cfg.extra + extra)


# Not settings of the experiment: where and how it runs, and the axes tables already show (seed, memory).
NOT_SETTINGS = ("seed", "memory", "device", "data_dir", "run_dir", "num_threads", "checkpoint_every",
                "deterministic", "compile", "extra")


def settings_label(cfg: RunConfig, standard: RunConfig, preset: str | None) -> str:
    """What differs from the benchmark's own settings, e.g. 'preset=reference,epochs_first=1' ('' for none);
    `standard` is the same run without flags and --set (a preset is named, not listed). Logged as the tag
    `cromo.overrides`; the leaderboard never pools runs whose labels differ."""
    diff = [f"{k}={getattr(cfg, k)}" for k in sorted(cfg.to_dict())
            if k not in NOT_SETTINGS and getattr(cfg, k) != getattr(standard, k)]
    return ",".join(([f"preset={preset}"] if preset else []) + diff)


def run_tracked(cfg: RunConfig, tracking_uri: str | None = None, *, progress: bool = True,
                parent_run_id: str | None = None, resume: bool = False) -> Any:
    """Run `cfg` and log it to the MLflow store at `tracking_uri` (default ./mlflow.db); with `resume`,
    continue this configuration's unfinished run from its last checkpoint."""
    from cromo_bench.runner import run
    from cromo_bench.tracking import MlflowTracker

    tracker = MlflowTracker(tracking_uri)
    return run(cfg, tracker, progress=progress, parent_run_id=parent_run_id, resume=resume)
