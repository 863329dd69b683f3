"""The continual loop: tasks -> epochs -> steps -> named loss terms (ARCHITECTURE.md, REFERENCE.md section 1.3).

At each task boundary: snapshot and freeze the old encoder, add the finished task to the buffer, build a fresh
optimizer and cosine schedule (momentum reset), and reset per-task objective state. Evaluation runs after every
task (accuracy matrix) and gives the final LA / TP / WP. Everything is reported through a `Tracker`.
Checkpoints (task boundaries, every `checkpoint_every` epochs, and on SIGTERM / SIGINT mid-epoch) let
`run(..., resume=True)` continue a run exactly where it stopped.
"""

from __future__ import annotations

import copy
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import cromo_bench
from cromo_bench import checkpoint as ckpt
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


class Interrupted(CromoError):
    """SIGTERM or SIGINT arrived; a checkpoint was saved."""


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
        f"{TAG_PREFIX}config_key": ckpt.config_key(cfg),
        f"{TAG_PREFIX}overrides": dict(cfg.extra).get("overrides", ""),
        f"{TAG_PREFIX}git_commit": git_commit(),
        f"{TAG_PREFIX}version": cromo_bench.__version__,
        f"{TAG_PREFIX}torch": torch.__version__,
        f"{TAG_PREFIX}python": platform.python_version(),
        f"{TAG_PREFIX}device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
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
    augment = TwoViewAugment(cfg.ssl, data.image_size, data.mean, data.std, crop_size=cfg.crop_size or None)
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


class FrozenEncoder(Encoder):
    """The frozen old model. Its forward runs under inference mode (no autograd bookkeeping; BatchNorm in train
    mode still updates its running statistics, as in the reference) and returns a normal tensor (a clone), so
    losses may save it for backward. Same parameters and state_dict keys as `Encoder`."""

    def forward(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            z = super().forward(x)  # (N, D)
        return z.clone()


def set_memory_format(parts: Parts, memory_format: torch.memory_format) -> None:
    """Lay out every 4-d parameter and buffer of the networks (encoder, old encoder, objective with BYOL's EMA
    target, method) in `memory_format` (channels_last on CUDA)."""
    for module in (parts.encoder, parts.old_encoder, parts.objective, parts.method):
        if module is not None:
            module.to(memory_format=memory_format)  # type: ignore[call-overload]


def freeze_copy(encoder: Encoder, bn_mode: str) -> Encoder:
    """A frozen snapshot of the encoder; BatchNorm in train mode (the reference) or eval mode."""
    old = FrozenEncoder(copy.deepcopy(encoder.backbone), copy.deepcopy(encoder.projector))
    for p in old.parameters():
        p.requires_grad_(False)
    old.train(bn_mode == "train")
    return old


def _virtual_tasks(cfg: RunConfig) -> list[list[int]] | None:
    from cromo_bench.confusion import virtual_tasks

    return (virtual_tasks(sum(cfg.eval_task_sizes), cfg.eval_task_sizes, cfg.class_order_seed)
            if cfg.eval_task_sizes and cfg.minibatch != "random" else None)


def batches(labels: Tensor, cfg: RunConfig, generator: torch.Generator) -> list[Tensor]:
    """Shuffled index batches over one task's samples; a trailing batch smaller than 2 is dropped
    (BatchNorm needs two samples). `cfg.minibatch` cil / dil group them by virtual task or by
    class-stratified shard, round-robin (the task-confusion study, `cromo_bench.confusion`)."""
    from cromo_bench.confusion import minibatches

    return minibatches(cfg.minibatch, len(labels), cfg.batch_size, generator, labels, _virtual_tasks(cfg))


def epoch_steps(labels: Tensor, cfg: RunConfig) -> int:
    """The number of batches `batches` gives for one task's labels (N,): every epoch has the same count."""
    from cromo_bench.confusion import count_minibatches

    return count_minibatches(cfg.minibatch, len(labels), cfg.batch_size, labels.cpu(), _virtual_tasks(cfg))


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

    def check(self, task: int) -> None:
        for k, bad in self.bad.items():
            if int(bad) >= 0:
                raise NonFiniteLoss(f"loss term '{k}' became non-finite at task {task + 1}, step {int(bad)}; "
                                    "lower the learning rate or check the data")

    def read(self, task: int) -> dict[str, float]:
        self.check(task)
        return {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}

    def state(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "bad": dict(self.bad), "count": self.count}

    def load(self, state: dict[str, Any], device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in state["sums"].items()}
        self.bad = {k: v.to(device) for k, v in state["bad"].items()}
        self.count = int(state["count"])


@dataclass
class Position:
    """Where the run stands: the next step to take."""

    task: int = 0
    epoch: int = 0
    pos: int = 0  # next batch within the epoch
    global_step: int = 0
    epoch_offset: int = 0  # epochs finished in earlier tasks (the step of per-epoch metrics)


def _stop_requested(flag: dict[str, str]) -> Any:
    """The SIGTERM / SIGINT handler: the first signal asks the loop to checkpoint and stop after the current
    step (an evaluation in progress finishes first); a second one stops at once, from the last checkpoint."""

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if flag:
            raise Interrupted(f"received {name} again: stopped at once; the last checkpoint stays, rerun the same "
                              "command with --resume")
        flag["signal"] = name
        print(f"\ncromo-bench: received {name}; saving a checkpoint after this step (an evaluation in progress "
              "finishes first). Send it again to stop at once.", file=sys.stderr, flush=True)

    return handler


class Trainer:
    """One run: owns the parts, the position in the task sequence, checkpoints and the tracker calls."""

    def __init__(self, cfg: RunConfig, tracker: Tracker, data: ImageData, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.cfg, self.tracker, self.data = cfg, tracker, data
        self.device = resolve_device(cfg.device)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.generator = seed_everything(cfg.seed)
        self.tasks = make_tasks(data.num_classes, cfg.task_sizes, cfg.class_order_seed)
        # evaluation split (offline bounds, task-confusion study): TP / WP over these virtual tasks
        self.eval_tasks = (make_tasks(data.num_classes, cfg.eval_task_sizes, cfg.class_order_seed)
                           if cfg.eval_task_sizes else None)
        self.parts = build_parts(cfg, data, self.device)
        # Speed (issue 8; same math): on CUDA bf16 autocast, channels_last and cuDNN autotuning. The CPU keeps
        # fp32 (bf16 autocast is ~25x slower without bf16 units) and NCHW (channels_last stalls at narrow widths).
        cuda = self.device.type == "cuda"
        self.amp = cuda
        self.memory_format = torch.channels_last if cuda else torch.contiguous_format
        if cuda and not cfg.deterministic:
            torch.backends.cudnn.benchmark = True
        set_memory_format(self.parts, self.memory_format)
        self._compiled: dict[int, nn.Module] = {}  # id(module) -> torch.compile wrapper (cfg.compile)
        self.train_x, self.train_y = data.train_x.to(self.device), data.train_y.to(self.device)
        self.task_idx = [task_indices(data.train_y, c).to(self.device) for c in self.tasks]
        self.total_steps = sum(epoch_steps(self.train_y[i], cfg) * cfg.epochs_for(t)
                               for t, i in enumerate(self.task_idx))
        self.at = Position()
        self.matrix: list[list[float | None]] = []
        self.evals: list[dict[str, Any]] = []
        self.directory = ckpt.run_directory(cfg)
        self.stop: dict[str, str] = {}
        self.seconds_before = 0.0  # training time of earlier, resumed-from attempts (checkpointed)
        self.clock = time.time()
        self.bar = tqdm(total=self.total_steps, disable=not progress, desc=run_name(cfg), unit="step", leave=False)
        self.optimizer: torch.optim.Optimizer | None = None
        self.meter = LossMeter()
        self.epoch_batches: list[Tensor] = []
        self._pending_objective: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._pending_optimizer: dict[str, Any] | None = None

    # --- checkpoints -------------------------------------------------------------------------------
    def save(self) -> None:
        p = self.parts
        payload = {
            "format": 1,
            "run_id": self.tracker.run_id,
            "position": vars(self.at).copy(),
            "batches": [b.cpu() for b in self.epoch_batches],
            "meter": self.meter.state(),
            "matrix": self.matrix,
            "evals": self.evals,
            "encoder": p.encoder.state_dict(),
            "old_encoder": p.old_encoder.state_dict() if p.old_encoder is not None else None,
            "objective": p.objective.state_dict(),
            "objective_extra": p.objective.extra_state(),
            "method": p.method.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "buffer": p.buffer.state_dict() if p.buffer is not None else None,
            "rng": ckpt.rng_state(self.generator),
            "seconds": self.elapsed(),
        }
        ckpt.save_checkpoint(self.directory, payload)

    def restore(self, state: dict[str, Any]) -> None:
        p = self.parts
        self.at = Position(**state["position"])
        self.matrix, self.evals = state["matrix"], state["evals"]
        p.encoder.load_state_dict(state["encoder"])
        if state["old_encoder"] is not None:
            p.old_encoder = freeze_copy(p.encoder, self.cfg.old_model_bn)
            p.old_encoder.load_state_dict(state["old_encoder"])
        self._pending_objective = (state["objective"], state["objective_extra"])
        p.method.load_state_dict(state["method"])
        if p.buffer is not None and state["buffer"] is not None:
            p.buffer.load_state_dict(state["buffer"])
        self.epoch_batches = [b.to(self.device) for b in state["batches"]]
        self.meter.load(state["meter"], self.device)
        self._pending_optimizer = state["optimizer"]
        ckpt.set_rng_state(state["rng"], self.generator)
        self.seconds_before = float(state.get("seconds", 0.0))
        self.bar.update(self.at.global_step)

    def _load_objective(self, state: tuple[dict[str, Any], dict[str, Any]]) -> None:
        self.parts.objective.load_state_dict(state[0])
        self.parts.objective.load_extra_state(state[1])

    # --- training ------------------------------------------------------------------------------------
    def begin_task(self, task: int, resumed: bool) -> None:
        from cromo_bench.optim import build_optimizer, task_lr

        steps = epoch_steps(self.train_y[self.task_idx[task]], self.cfg) * self.cfg.epochs_for(task)
        pending, self._pending_objective = self._pending_objective, None
        if pending is not None and not resumed:  # restored at a task boundary: then start the new task
            self._load_objective(pending)
        self.parts.objective.start_task(task, steps, self.total_steps)
        if pending is not None and resumed:  # restored mid-task: the saved state is this task's own
            self._load_objective(pending)
        self.base_lr = task_lr(self.cfg, task)
        self.optimizer = build_optimizer(trainable_parameters(self.parts), self.cfg, self.base_lr)
        if resumed and self._pending_optimizer is not None:
            self.optimizer.load_state_dict(self._pending_optimizer)
        self._pending_optimizer = None

    def train_epoch(self, task: int) -> None:
        from cromo_bench.optim import lr_at

        cfg, p, at = self.cfg, self.parts, self.at
        assert self.optimizer is not None
        lr = lr_at(at.epoch, cfg.epochs_for(task), self.base_lr, cfg.warmup_epochs, cfg.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx = self.task_idx[task]
        if at.pos == 0:
            self.epoch_batches = [b.to(self.device) for b in batches(self.train_y[idx].cpu(), cfg, self.generator)]
            self.meter = LossMeter()
        replay = self.replay()
        p.encoder.train()
        p.method.train()
        while at.pos < len(self.epoch_batches):
            terms = self.step(task, idx[self.epoch_batches[at.pos]], replay)
            self.meter.add(terms, at.global_step)
            at.global_step += 1
            at.pos += 1
            self.bar.update(1)
            if self.stop:
                self.meter.check(task)  # never checkpoint a diverged model
                self.save()
                raise Interrupted(f"received {self.stop['signal']} at task {task + 1}, epoch {at.epoch + 1}; "
                                  f"checkpoint saved in {self.directory}; rerun the same command with --resume")
        means = self.meter.read(task)
        logged = {f"loss_{k}": v for k, v in means.items()} | {"loss": sum(means.values()), "lr": lr}
        self.tracker.log_metrics(logged, step=at.epoch_offset + at.epoch)
        self.bar.set_postfix(loss=f"{logged['loss']:.3f}")
        at.epoch, at.pos = at.epoch + 1, 0
        self.epoch_batches = []
        if cfg.checkpoint_every and at.epoch % cfg.checkpoint_every == 0 and at.epoch < cfg.epochs_for(task):
            self.save()

    def replay(self) -> Any:
        """The step's replay function (n -> two views of n buffer images), or None without buffer images."""
        p = self.parts
        if p.buffer is None or len(p.buffer) == 0:
            return None
        return make_replay(p, self.generator, self.memory_format)

    def _run(self, module: nn.Module, batch: int) -> nn.Module:
        """`module` itself, or with cfg.compile its torch.compile wrapper (same parameters; the module and its
        checkpoints stay plain, and deep copies of it never share a compiled call). Only full batches run
        compiled: an epoch's short last batch runs eagerly, which costs no recompilation (and avoids an
        inductor crash seen on the CPU with torch 2.14 when a second batch size was compiled)."""
        if not self.cfg.compile or batch != self.cfg.batch_size:
            return module
        live = (id(self.parts.encoder), id(self.parts.old_encoder))  # drop wrappers of replaced old encoders
        self._compiled = {k: v for k, v in self._compiled.items() if k in live}
        if id(module) not in self._compiled:
            self._compiled[id(module)] = torch.compile(module)  # type: ignore[assignment]
        return self._compiled[id(module)]

    def make_step(self, task: int, x1: Tensor, x2: Tensor, replay: Any, y: Tensor | None = None) -> Step:
        p = self.parts
        old = self._run(p.old_encoder, len(x1)) if p.old_encoder is not None else None
        return Step(x1, x2, task, self._run(p.encoder, len(x1)), p.objective, old, replay, self.generator, y)

    def step(self, task: int, sel: Tensor, replay: Any) -> dict[str, Tensor]:
        """One training step on the current images `train_x[sel]` (indices on the device): two views, the
        method's named loss terms (under bf16 autocast on CUDA), backward, optimizer step, the objective's
        after-step update. No host sync: the terms stay on the device."""
        p = self.parts
        assert self.optimizer is not None
        x1, x2 = augment_views(p.augment, self.train_x[sel], self.memory_format)  # (B, C, S, S) float32 each
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            terms = p.method.loss_terms(self.make_step(task, x1, x2, replay, self.train_y[sel]))
            loss = torch.stack([t.float() for t in terms.values()]).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        p.objective.after_step(p.encoder)
        return terms

    def carry_over(self, task: int) -> None:
        """What the next task trains with: the frozen old encoder and the buffer filled from `task`."""
        p = self.parts
        if p.method.needs_old_model:
            p.old_encoder = freeze_copy(p.encoder, self.cfg.old_model_bn)
            p.old_encoder.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        if p.buffer is not None:
            idx = self.task_idx[task]
            p.buffer.add_task(self.train_x[idx], self.train_y[idx], task, self.generator)

    def end_task(self, task: int) -> None:
        """Task boundary: snapshot the old encoder, fill the buffer, evaluate, checkpoint."""
        from cromo_bench.evaluate import evaluate_after_task

        cfg, p = self.cfg, self.parts
        self.carry_over(task)
        if cfg.eval_every_task or task == len(self.tasks) - 1:
            from cromo_bench.confusion import eval_split

            eval_tasks, eval_index = eval_split(self.tasks, self.eval_tasks, task)
            cuda_devices = [torch.cuda.current_device()] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda_devices):
                torch.manual_seed(cfg.seed * 1000 + task + 7)  # the probe's own stream, fixed per task
                generator = torch.Generator().manual_seed(cfg.seed * 1000 + task + 7)
                ev = evaluate_after_task(p.encoder.backbone, self.data, eval_tasks, eval_index, cfg,
                                         self.device, generator)
            self.evals.append(ev.to_dict())
            self.tracker.log_metrics({k: v for k, v in ev.scalars().items() if v == v}, step=task)  # no NaN
            self.matrix.append(list(self.evals[-1]["per_task"]) + [None] * (len(eval_tasks) - 1 - eval_index))
        self.at = Position(task + 1, 0, 0, self.at.global_step, self.at.epoch_offset + cfg.epochs_for(task))
        self.optimizer = None
        self.save()

    def elapsed(self) -> float:
        """Seconds of training and evaluation so far, over every attempt of this run."""
        return self.seconds_before + time.time() - self.clock

    def train(self) -> None:
        self.clock = time.time()
        resumed = self.at.epoch > 0 or self.at.pos > 0
        for task in range(self.at.task, len(self.tasks)):
            self.bar.set_description(f"{run_name(self.cfg)} task {task + 1}/{len(self.tasks)}")
            self.begin_task(task, resumed)
            resumed = False
            while self.at.epoch < self.cfg.epochs_for(task):
                self.train_epoch(task)
            self.end_task(task)
        self.bar.close()


def augment_views(augment: nn.Module, x_uint8: Tensor,
                  memory_format: torch.memory_format = torch.contiguous_format) -> tuple[Tensor, Tensor]:
    """Two float32 views of uint8 images, batched on their device; augmentation never runs under autocast
    (the method may call replay inside the step's autocast region). `memory_format`: the encoder's layout."""
    with torch.autocast(x_uint8.device.type, enabled=False):
        v1, v2 = augment(x_uint8)  # (B, C, S, S) each
    if memory_format != torch.contiguous_format:
        v1, v2 = v1.contiguous(memory_format=memory_format), v2.contiguous(memory_format=memory_format)
    return v1, v2


def make_replay(parts: Parts, generator: torch.Generator,
                memory_format: torch.memory_format = torch.contiguous_format) -> Any:
    buffer, augment = parts.buffer, parts.augment

    def replay(n: int) -> tuple[Tensor, Tensor]:
        images = buffer.sample(n, generator)  # (n, C, H, W) uint8 on the device
        return augment_views(augment, images, memory_format)

    return replay


def _finish(trainer: Trainer, seconds: float) -> dict[str, Any]:
    """Log the final metrics, the accuracy matrix, plots and result.json; return the result dict."""
    from cromo_bench.evaluate import continual_summary

    cfg, tracker, tasks, matrix = trainer.cfg, trainer.tracker, trainer.tasks, trainer.matrix
    final = trainer.evals[-1]
    metrics = {k: v for k, v in {**final["metrics"], **final["knn"]}.items() if v is not None and v == v}
    if len(matrix) == len(tasks):
        metrics.update(continual_summary(matrix))
    metrics["train_seconds"] = seconds
    tracker.log_metrics(metrics, step=len(tasks) - 1)
    # offline bounds and the task-confusion study train one task and evaluate over virtual tasks
    tracker.log_json("accuracy_matrix.json", {"tasks": tasks, "eval_tasks": trainer.eval_tasks, "R": matrix})
    result = {"run_id": tracker.run_id, "config": cfg.to_dict(), "tasks": tasks, "metrics": metrics,
              "accuracy_matrix": matrix, "final": final, "per_task_evaluations": trainer.evals}
    tracker.log_json("result.json", result)
    _log_plots(tracker, matrix)
    return result


def _log_plots(tracker: Tracker, matrix: list[list[float | None]]) -> None:
    try:
        from cromo_bench import plots
    except ImportError:
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("accuracy_matrix.png", plots.plot_accuracy_matrix), ("task_curves.png",
                                                                                plots.plot_task_curves)):
            path = Path(tmp) / name
            fn(matrix, path)
            tracker.log_file(path, "plots")


def run(cfg: RunConfig, tracker: Tracker, *, progress: bool = True, data: ImageData | None = None,
        parent_run_id: str | None = None, resume: bool = False) -> RunResult:
    """Train `cfg.method` with `cfg.ssl` over the tasks of `cfg.benchmark`, evaluate, and log everything.

    With `resume`, continue the latest unfinished run of this configuration from its last checkpoint, in the
    same tracker run."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.image_size)
    data = data.subset_per_class(cfg.subset_per_class)
    trainer = Trainer(cfg, tracker, data, progress)
    state = ckpt.read_state(trainer.directory) if resume else None
    if state is not None and state.get("status") == "finished":
        raise CromoError(f"this configuration already finished as run {state.get('run_id')}; "
                         "drop --resume to start a new run")
    saved = ckpt.load_checkpoint(trainer.directory) if state is not None else None
    if saved is not None and state is not None:
        if saved.get("run_id") != state.get("run_id"):
            raise CromoError(f"the checkpoint in {trainer.directory} belongs to run {saved.get('run_id')}, not to "
                             f"the unfinished run {state.get('run_id')}; drop --resume to start afresh")
        trainer.restore(saved)
        tracker.start(cfg.benchmark, run_name(cfg), {}, {}, run_id=state["run_id"])
    else:
        ckpt.discard_checkpoint(trainer.directory)
        memory = cfg.memory if trainer.parts.buffer is not None else 0
        tracker.start(cfg.benchmark, run_name(cfg), run_tags(cfg, trainer.device, memory), cfg.flat_params(),
                      parent_run_id=parent_run_id)
    ckpt.write_state(trainer.directory, run_id=tracker.run_id, status="running", config_key=ckpt.config_key(cfg))
    handler = _stop_requested(trainer.stop)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)} if _main_thread() else {}
    status = "FAILED"
    try:
        trainer.train()
        result = _finish(trainer, trainer.elapsed())
        status = "FINISHED"
        ckpt.write_state(trainer.directory, status="finished")
        return RunResult(tracker.run_id, result["metrics"], trainer.matrix, result)
    except Interrupted:
        status = "KILLED"
        ckpt.write_state(trainer.directory, status="interrupted")
        raise
    except NonFiniteLoss as exc:
        ckpt.write_state(trainer.directory, status="failed", reason=str(exc))
        tracker.set_tags({f"{TAG_PREFIX}failure": str(exc)})
        raise
    except Exception as exc:
        ckpt.write_state(trainer.directory, status="failed", reason=f"{type(exc).__name__}: {exc}")
        tracker.set_tags({f"{TAG_PREFIX}failure": f"{type(exc).__name__}: {exc}"[:5000]})
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        trainer.bar.close()
        tracker.end(status)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
