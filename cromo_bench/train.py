"""The continual loop: tasks -> epochs -> steps -> named loss terms (ARCHITECTURE.md, REFERENCE.md section 1.3).

At each task boundary: snapshot and freeze the old encoder, add the finished task to the buffer, build a fresh
optimizer and cosine schedule (momentum reset), and reset per-task objective state. Evaluation runs after every
task (accuracy matrix) and gives the final LA / TP / WP. Everything is reported through a `Tracker`.
"""

from __future__ import annotations

import copy
import math
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import cromo_bench
from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData, load_dataset, make_tasks, task_indices
from cromo_bench.errors import CromoError
from cromo_bench.method import Method, Step
from cromo_bench.models import Encoder, build_backbone
from cromo_bench.objectives.base import Objective
from cromo_bench.registry import lookup
from cromo_bench.tracking import TAG_PREFIX, Tracker


class NonFiniteLoss(CromoError):
    """A loss term became NaN or infinite."""


@dataclass
class RunResult:
    run_id: str
    metrics: dict[str, float]
    accuracy_matrix: list[list[float | None]]
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Parts:
    """The trainable and frozen pieces of one run."""

    encoder: Encoder
    objective: Objective
    method: Method
    augment: nn.Module
    old_encoder: Encoder | None = None
    buffer: Any = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CromoError("--device cuda was requested but no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise CromoError(f"unknown device '{name}'; choose auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (CPU and CUDA; augmentations draw from it) and return the run's sampling generator."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed + 1)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags(cfg: RunConfig, device: torch.device, memory: int) -> dict[str, str]:
    """The run schema the leaderboard reads (`cromo.*`), plus provenance."""
    return {
        f"{TAG_PREFIX}method": cfg.method,
        f"{TAG_PREFIX}ssl": cfg.ssl,
        f"{TAG_PREFIX}split": cfg.benchmark,
        f"{TAG_PREFIX}memory": str(memory),
        f"{TAG_PREFIX}seed": str(cfg.seed),
        f"{TAG_PREFIX}benchmark_version": str(cfg.benchmark_version),
        f"{TAG_PREFIX}class_order": "natural" if cfg.class_order_seed is None else f"seed{cfg.class_order_seed}",
        f"{TAG_PREFIX}git_commit": git_commit(),
        f"{TAG_PREFIX}version": cromo_bench.__version__,
        f"{TAG_PREFIX}torch": torch.__version__,
        f"{TAG_PREFIX}python": platform.python_version(),
        f"{TAG_PREFIX}device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or "cpu",
    }


def run_name(cfg: RunConfig) -> str:
    return f"{cfg.method}-{cfg.ssl}-{cfg.benchmark}-s{cfg.seed}"


def build_parts(cfg: RunConfig, data: ImageData, device: torch.device) -> Parts:
    from cromo_bench.augment import TwoViewAugment

    objective_cls = lookup("objective", cfg.ssl)
    method_cls = lookup("method", cfg.method)
    backbone, feat_dim = build_backbone(cfg)
    objective: Objective = objective_cls(cfg, feat_dim)
    encoder = Encoder(backbone, objective.build_projector())
    objective.attach(encoder)
    method: Method = method_cls(cfg, objective)
    augment = TwoViewAugment(cfg.ssl, data.image_size, data.mean, data.std)
    parts = Parts(encoder.to(device), objective.to(device), method.to(device), augment.to(device))
    if method_cls.needs_buffer and cfg.memory > 0:
        from cromo_bench.buffer import make_buffer

        parts.buffer = make_buffer(cfg, data, device)
    return parts


def trainable_parameters(parts: Parts) -> list[tuple[str, nn.Parameter]]:
    seen: set[int] = set()
    out = []
    for prefix, module in (("encoder", parts.encoder), ("objective", parts.objective), ("method", parts.method)):
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append((f"{prefix}.{name}", p))
    return out


def freeze_copy(encoder: Encoder, bn_mode: str) -> Encoder:
    """A frozen snapshot of the encoder; BatchNorm in train mode (the reference) or eval mode."""
    old = copy.deepcopy(encoder)
    for p in old.parameters():
        p.requires_grad_(False)
    old.train(bn_mode == "train")
    return old


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """Shuffled index batches; a trailing batch smaller than 2 is dropped (BatchNorm needs two samples)."""
    perm = torch.randperm(n, generator=generator)
    out = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in out if len(b) >= 2]


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)


class LossMeter:
    """Sums loss terms on the device and remembers the first non-finite step; read once per epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.bad: dict[str, Tensor] = {}
        self.count = 0

    def add(self, terms: dict[str, Tensor], step: int) -> None:
        for k, v in terms.items():
            v = v.detach().float()
            if k not in self.sums:
                self.sums[k] = torch.zeros((), device=v.device)
                self.bad[k] = torch.full((), -1, device=v.device, dtype=torch.long)
            self.sums[k] += v
            first = (self.bad[k] < 0) & ~torch.isfinite(v)
            self.bad[k] = torch.where(first, torch.full_like(self.bad[k], step), self.bad[k])
        self.count += 1

    def read(self, task: int) -> dict[str, float]:
        means = {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}
        for k, bad in self.bad.items():
            if int(bad) >= 0:
                raise NonFiniteLoss(f"loss term '{k}' became non-finite at task {task + 1}, step {int(bad)}; "
                                    "lower the learning rate or check the data")
        return means


def train_task(cfg: RunConfig, parts: Parts, data_x: Tensor, data_y: Tensor, task: int, generator: torch.Generator,
               global_step: int, total_steps: int, tracker: Tracker, epoch_offset: int,
               on_step: Callable[[dict[str, float] | None], None]) -> int:
    """Train one task; return the new global step."""
    from cromo_bench.optim import build_optimizer, lr_at, task_lr

    n, epochs = len(data_x), cfg.epochs_for(task)
    parts.objective.start_task(task, steps_per_epoch(n, cfg.batch_size) * epochs, total_steps)
    base_lr = task_lr(cfg, task)
    optimizer = build_optimizer(trainable_parameters(parts), cfg, base_lr)
    replay = make_replay(parts, generator) if parts.buffer is not None and len(parts.buffer) > 0 else None
    parts.encoder.train()
    parts.method.train()
    for epoch in range(epochs):
        lr = lr_at(epoch, epochs, base_lr, cfg.warmup_epochs, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        meter = LossMeter()
        for idx in batches(n, cfg.batch_size, generator):
            x = data_x[idx.to(data_x.device)]  # (B, C, H, W) uint8
            x1, x2 = parts.augment(x)
            step = Step(x1, x2, task, parts.encoder, parts.objective, parts.old_encoder, replay, generator,
                        data_y[idx.to(data_y.device)])
            terms = parts.method.loss_terms(step)
            loss = torch.stack(list(terms.values())).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            parts.objective.after_step(parts.encoder)
            meter.add(terms, global_step)
            global_step += 1
            on_step(None)
        means = meter.read(task)
        logged = {f"loss_{k}": v for k, v in means.items()} | {"loss": sum(means.values()), "lr": lr}
        tracker.log_metrics(logged, step=epoch_offset + epoch)
        on_step(logged)
    return global_step


def make_replay(parts: Parts, generator: torch.Generator) -> Callable[[int], tuple[Tensor, Tensor]]:
    buffer, augment = parts.buffer, parts.augment

    def replay(n: int) -> tuple[Tensor, Tensor]:
        images = buffer.sample(n, generator)  # (n, C, H, W) uint8 on the device
        return augment(images)

    return replay


def end_task(cfg: RunConfig, parts: Parts, data: ImageData, idx: Tensor, task: int,
             generator: torch.Generator) -> None:
    """Task boundary: snapshot the old encoder and add the finished task to the buffer."""
    if parts.method.needs_old_model:
        parts.old_encoder = freeze_copy(parts.encoder, cfg.old_model_bn)
    if parts.buffer is not None:
        parts.buffer.add_task(data.train_x[idx], data.train_y[idx], task, generator)


def evaluate_task(cfg: RunConfig, parts: Parts, data: ImageData, tasks: list[list[int]], task: int,
                  device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    from cromo_bench.evaluate import evaluate_after_task

    return evaluate_after_task(parts.encoder.backbone, data, tasks, task, cfg, device, generator).to_dict()


def run(cfg: RunConfig, tracker: Tracker, *, progress: bool = True, data: ImageData | None = None,
        parent_run_id: str | None = None) -> RunResult:
    """Train `cfg.method` with `cfg.ssl` over the tasks of `cfg.benchmark`, evaluate, and log everything."""
    from tqdm.auto import tqdm

    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    generator = seed_everything(cfg.seed)
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.image_size)
    data = data.subset_per_class(cfg.subset_per_class)
    tasks = make_tasks(data.num_classes, cfg.task_sizes, cfg.class_order_seed)
    parts = build_parts(cfg, data, device)
    memory = cfg.memory if parts.buffer is not None else 0
    tracker.start(cfg.benchmark, run_name(cfg), run_tags(cfg, device, memory), cfg.flat_params(),
                  parent_run_id=parent_run_id)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    task_idx = [task_indices(data.train_y, c) for c in tasks]
    per_task_steps = [steps_per_epoch(len(i), cfg.batch_size) * cfg.epochs_for(t) for t, i in enumerate(task_idx)]
    total_steps = sum(per_task_steps)
    bar = tqdm(total=total_steps, disable=not progress, desc=run_name(cfg), unit="step", leave=False)

    def on_step(logged: dict[str, float] | None) -> None:
        if logged is None:
            bar.update(1)
        else:
            bar.set_postfix(loss=f"{logged['loss']:.3f}")

    status, t0 = "FAILED", time.time()
    matrix: list[list[float | None]] = []
    evals: list[dict[str, Any]] = []
    try:
        step, epoch_offset = 0, 0
        for t, idx in enumerate(task_idx):
            bar.set_description(f"{run_name(cfg)} task {t + 1}/{len(tasks)}")
            step = train_task(cfg, parts, train_x[idx.to(device)], train_y[idx.to(device)], t, generator, step, total_steps, tracker,
                              epoch_offset, on_step)
            epoch_offset += cfg.epochs_for(t)
            end_task(cfg, parts, data, idx, t, generator)
            if cfg.eval_every_task or t == len(tasks) - 1:
                ev = evaluate_task(cfg, parts, data, tasks, t, device, generator)
                evals.append(ev)
                tracker.log_metrics(ev["metrics"], step=t)
                matrix.append(ev["row"] + [None] * (len(tasks) - 1 - t))
        bar.close()
        result = finish(cfg, tracker, tasks, matrix, evals, time.time() - t0)
        status = "FINISHED"
        return RunResult(tracker.run_id, result["metrics"], matrix, result)
    except NonFiniteLoss as exc:
        tracker.set_tags({f"{TAG_PREFIX}failure": str(exc)})
        raise
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        bar.close()
        tracker.end(status)


def finish(cfg: RunConfig, tracker: Tracker, tasks: list[list[int]], matrix: list[list[float | None]],
           evals: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Log the final metrics, the accuracy matrix and result.json; return the result dict."""
    from cromo_bench.evaluate import continual_summary

    final = evals[-1]
    metrics = dict(final["metrics"])
    if len(matrix) == len(tasks):
        metrics.update(continual_summary(matrix))
    metrics["train_seconds"] = seconds
    tracker.log_metrics(metrics, step=len(tasks) - 1)
    tracker.log_json("accuracy_matrix.json", {"tasks": tasks, "R": matrix})
    result = {"config": cfg.to_dict(), "tasks": tasks, "metrics": metrics, "accuracy_matrix": matrix,
              "final": final, "per_task_evaluations": evals}
    tracker.log_json("result.json", result)
    return result
