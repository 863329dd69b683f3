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
    cfg = resolve_config(
        spec, method, ssl,
        objective_defaults=objective_cls.defaults,
        method_defaults={**preset_vals, **getattr(method_cls, "defaults", {})},
        flags=flags or {},
        overrides=parse_overrides(sets or []),
    )
    return dataclasses.replace(cfg, extra=cfg.extra + (("preset", preset),)) if preset else cfg


def run_tracked(cfg: RunConfig, tracking_uri: str | None = None, *, progress: bool = True,
                parent_run_id: str | None = None, resume: bool = False) -> Any:
    """Run `cfg` and log it to the MLflow store at `tracking_uri` (default ./mlflow.db); with `resume`,
    continue this configuration's unfinished run from its last checkpoint."""
    from cromo_bench.tracking import MlflowTracker
    from cromo_bench.train import run

    tracker = MlflowTracker(tracking_uri)
    return run(cfg, tracker, progress=progress, parent_run_id=parent_run_id, resume=resume)
