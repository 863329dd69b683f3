"""Benchmark specs (frozen, versioned) and the resolution of a run's configuration from them.

A spec names a dataset, its class-incremental split and every setting that changes the numbers. Bump
`version` whenever a change would change the numbers: tables never pool runs of different versions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cromo_bench.config import FIELDS, RunConfig, with_values
from cromo_bench.errors import CromoError

CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "dataset": ("digits", "cifar10", "cifar100", "tinyimagenet", "folder"),
    "backbone": ("resnet18", "resnet50"),
    "norm": ("bn", "gn"),
    "optimizer": ("lars", "sgd"),
    "ema_schedule": ("global", "task"),
    "buffer_policy": ("per_task", "fixed_total"),
    "lambda_mode": ("fixed", "beta"),
    "cromo_loss": ("native", "bt"),
    "old_model_bn": ("train", "eval"),
    "probe_mode": ("fast", "paper"),
    "minibatch": ("random", "cil", "dil"),
}


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark setting. `defaults` and `per_objective` hold RunConfig field values."""

    name: str
    version: int
    description: str
    dataset: str
    task_sizes: tuple[int, ...]
    epochs: tuple[int, int]  # (first task, later tasks)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    per_objective: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    class_order_seed: int | None = None  # None: natural order

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValueError(f"benchmark {self.name}: version must be >= 1")
        if not self.task_sizes or any(s <= 0 for s in self.task_sizes):
            raise ValueError(f"benchmark {self.name}: task sizes must be positive")
        if self.dataset not in CHOICES["dataset"]:
            raise ValueError(f"benchmark {self.name}: unknown dataset {self.dataset}")
        for key in list(self.defaults) + [k for d in self.per_objective.values() for k in d]:
            if key not in FIELDS:
                raise ValueError(f"benchmark {self.name}: unknown config key {key}")
        object.__setattr__(self, "defaults", _frozen(self.defaults))
        object.__setattr__(
            self, "per_objective", _frozen({k: _frozen(v) for k, v in self.per_objective.items()})
        )

    @property
    def num_classes(self) -> int:
        return sum(self.task_sizes)


def validate(cfg: RunConfig) -> RunConfig:
    """Check choice fields and numeric ranges; raise a one-line CromoError naming what is allowed."""
    for key, allowed in CHOICES.items():
        value = getattr(cfg, key)
        if value not in allowed:
            raise CromoError(f"{key} '{value}' is not allowed; choose one of: {', '.join(allowed)}")
    positive = ("batch_size", "image_size", "width", "proj_hidden", "proj_out", "probe_batch_size", "knn_k")
    for key in positive:
        if getattr(cfg, key) <= 0:
            raise CromoError(f"{key} must be positive, got {getattr(cfg, key)}")
    for key in ("epochs_first", "epochs_later", "memory", "replay_bs", "probe_epochs", "subset_per_class",
                "crop_size"):
        if getattr(cfg, key) < 0:
            raise CromoError(f"{key} must be >= 0, got {getattr(cfg, key)}")
    if cfg.batch_size < 2:
        raise CromoError(f"batch_size must be at least 2 (BatchNorm needs two samples), got {cfg.batch_size}")
    if cfg.lr <= 0:
        raise CromoError(f"lr must be positive, got {cfg.lr}")
    if not 0.0 <= cfg.mix_lambda <= 1.0:
        raise CromoError(f"mix_lambda must lie in [0, 1], got {cfg.mix_lambda}")
    return cfg


def resolve_config(
    spec: BenchmarkSpec,
    method: str,
    ssl: str,
    *,
    objective_defaults: Mapping[str, Any] = MappingProxyType({}),
    method_defaults: Mapping[str, Any] = MappingProxyType({}),
    flags: Mapping[str, Any] = MappingProxyType({}),
    overrides: Mapping[str, Any] = MappingProxyType({}),
) -> RunConfig:
    """Build the RunConfig of one run: defaults < objective < spec < spec[ssl] < method < flags < --set."""
    cfg = RunConfig()
    cfg = with_values(cfg, dict(objective_defaults))
    base: dict[str, Any] = {
        "method": method,
        "ssl": ssl,
        "benchmark": spec.name,
        "benchmark_version": spec.version,
        "dataset": spec.dataset,
        "task_sizes": spec.task_sizes,
        "epochs_first": spec.epochs[0],
        "epochs_later": spec.epochs[1],
        "class_order_seed": spec.class_order_seed,
    }
    cfg = dataclasses.replace(cfg, **base)
    cfg = with_values(cfg, dict(spec.defaults))
    cfg = with_values(cfg, dict(spec.per_objective.get(ssl, {})))
    cfg = with_values(cfg, dict(method_defaults))
    cfg = with_values(cfg, {k: v for k, v in flags.items() if v is not None})
    cfg = with_values(cfg, dict(overrides))
    return validate(cfg)
