"""The run configuration: one flat, frozen dataclass, and type-checked `--set key=value` overrides.

Resolution order (later wins): RunConfig defaults -> the objective's defaults (REFERENCE.md section 10)
-> the benchmark spec's defaults -> the spec's per-objective values -> the method's defaults -> CLI flags
-> `--set` overrides. `resolve_config` in `cromo_bench.benchmark` performs it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from cromo_bench.errors import CromoError


@dataclass(frozen=True)
class RunConfig:
    # --- identity ---------------------------------------------------------------------------------
    method: str = "finetune"
    ssl: str = "barlow"
    benchmark: str = "digits-5x2"
    benchmark_version: int = 1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # --- data -------------------------------------------------------------------------------------
    dataset: str = "digits"  # digits | cifar10 | cifar100 | tinyimagenet | folder
    data_dir: str = ""  # where datasets live (or are downloaded to); folder: the ImageFolder root
    task_sizes: tuple[int, ...] = (2, 2, 2, 2, 2)
    class_order_seed: int | None = None  # None: natural order (the reference); an int: seeded permutation
    subset_per_class: int = 0  # 0: all training images; n: the first n per class (CPU presets)
    image_size: int = 32
    crop_size: int = 0  # SSL crops: 0 = image_size; 32 reproduces the reference's BYOL crop on TinyImageNet
    # --- model ------------------------------------------------------------------------------------
    backbone: str = "resnet18"  # resnet18 (CIFAR stem) | resnet50 (reference TinyImageNet variant)
    width: int = 64  # stem width; 64 is the standard ResNet, 8 or 16 for small CPU runs
    norm: str = "bn"  # bn | gn
    weight_standardization: bool = False
    proj_hidden: int = 2048
    proj_out: int = 2048
    pred_hidden: int = 4096  # BYOL predictor
    # --- optimisation -----------------------------------------------------------------------------
    epochs_first: int = 1
    epochs_later: int = 1
    batch_size: int = 256
    optimizer: str = "lars"  # lars | sgd
    lr: float = 0.25
    weight_decay: float = 1e-4
    momentum: float = 0.9
    lars_eta: float = 0.02
    warmup_epochs: int = 0
    min_lr: float = 0.0
    later_lr_factor: float = 1.0  # the reference divides the LR by 10 on tasks 2+ for some objectives
    # --- objectives (REFERENCE.md section 3) --------------------------------------------------------
    bt_lambda: float = 5e-3
    bt_scale: float = 0.1
    temperature: float = 0.5
    cim_alpha: float = 250.0
    cim_la_r: float = 0.01
    cim_la_mu: float = 0.01
    cim_eps: float = 1e-8
    ema_base: float = 0.99
    ema_schedule: str = "global"  # global (over the whole sequence) | task (restarted every task)
    # --- continual methods (REFERENCE.md sections 4-9) -------------------------------------------------
    memory: int = 0  # buffer budget in images: per task (per_task) or in total (fixed_total)
    buffer_policy: str = "per_task"  # per_task | fixed_total
    buffer_replacement: bool = True
    replay_bs: int = 64
    distill_weight: float = 1.0
    distill_hidden: int = 2048
    lambda_mode: str = "beta"  # fixed | beta
    mix_lambda: float = 0.7
    mix_alpha: float = 1.0
    cromo_loss: str = "native"  # native | bt (the reference uses Barlow Twins for CorInfoMax)
    detach_current_target: bool = True
    old_model_bn: str = "train"  # train (reference) | eval
    # --- evaluation (REFERENCE.md section 11) ---------------------------------------------------------
    probe_mode: str = "fast"  # fast | paper
    probe_epochs: int = 100
    probe_lr: float = 0.2
    probe_batch_size: int = 256
    eval_every_task: bool = True
    knn_k: int = 200
    knn_sigma: float = 0.5
    # --- run control --------------------------------------------------------------------------------
    run_dir: str = "runs"
    checkpoint_every: int = 0  # epochs; 0: task boundaries only
    deterministic: bool = False  # torch.use_deterministic_algorithms (for GPU runs; the CPU is deterministic)
    num_threads: int = 0  # CPU threads for torch; 0: leave torch's default
    compile: bool = False  # torch.compile the encoders of the training step (same math; full batches only)
    # --- task-confusion study (REFERENCE.md section 12) and offline upper bounds ----------------------------
    minibatch: str = "random"  # random | cil (each batch from one virtual task) | dil (class-stratified shards)
    eval_task_sizes: tuple[int, ...] = ()  # () : evaluate on task_sizes; else the virtual split for TP/WP
    extra: tuple[tuple[str, Any], ...] = field(default=())  # free-form, logged, never read by the core

    @property
    def num_tasks(self) -> int:
        return len(self.task_sizes)

    def epochs_for(self, task: int) -> int:
        return self.epochs_first if task == 0 else self.epochs_later

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat_params(self) -> dict[str, str]:
        """Every field as a string, for MLflow params."""
        return {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in self.to_dict().items()}


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(RunConfig)}
_HINTS = typing.get_type_hints(RunConfig)
# Set by the names a run is launched with; overriding them would mislabel the run.
IDENTITY_KEYS = ("method", "ssl", "benchmark", "benchmark_version")


def _coerce(key: str, value: Any) -> Any:
    """Convert `value` (often a string from the CLI) to the declared type of field `key`."""
    hint = _HINTS[key]
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))):
        return None
    base = next((a for a in args if a is not type(None)), hint) if (
        typing.get_origin(hint) in (typing.Union, types.UnionType)
    ) else hint
    if typing.get_origin(base) is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        try:
            return tuple(int(v) for v in items)
        except (TypeError, ValueError):
            raise CromoError(f"--set {key}: expected a comma-separated list of integers, got '{value}'") from None
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            s = str(value).lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base is float:
            out = float(value)
            return out
        if base is str:
            return str(value)
    except (TypeError, ValueError):
        raise CromoError(f"--set {key}: expected {getattr(base, '__name__', base)}, got '{value}'") from None
    return value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Parse `key=value` strings; unknown keys and badly typed values are errors."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise CromoError(f"--set expects key=value, got '{pair}'")
        key, value = pair.split("=", 1)
        key = key.strip()
        if key in IDENTITY_KEYS:
            raise CromoError(f"--set {key} is not allowed: the run's {key} comes from --method, --ssl and --split")
        if key not in FIELDS or key == "extra":
            from cromo_bench.errors import unknown_name

            raise unknown_name("config key", key, [k for k in FIELDS if k != "extra" and k not in IDENTITY_KEYS])
        out[key] = _coerce(key, value.strip())
    return out


def with_values(cfg: RunConfig, values: dict[str, Any]) -> RunConfig:
    """Return `cfg` with `values` applied, each checked and coerced to its field's type."""
    bad = [k for k in values if k not in FIELDS]
    if bad:
        from cromo_bench.errors import unknown_name

        raise unknown_name("config key", bad[0], list(FIELDS))
    return dataclasses.replace(cfg, **{k: _coerce(k, v) for k, v in values.items()})
