"""The continual loop: tasks -> epochs -> steps -> named loss terms (ARCHITECTURE.md, REFERENCE.md section 1.3).

At each task boundary: snapshot and freeze the old encoder, add the finished task to the buffer, build a fresh
optimizer and cosine schedule (momentum reset), and reset per-task objective state. Evaluation runs after every
task (accuracy matrix) and gives the final LA / TP / WP. Everything is reported through a `Tracker`.
Checkpoints (task boundaries, every `checkpoint_every` epochs, and on SIGTERM / SIGINT mid-epoch) let
`cromo_bench.runner.run(..., resume=True)` continue a run exactly where it stopped. The pieces a run trains
are built in `cromo_bench.parts`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cromo_bench import checkpoint as ckpt
from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData, make_tasks, task_indices
from cromo_bench.errors import CromoError
from cromo_bench.method import Step
from cromo_bench.parts import (
    augment_views,
    build_parts,
    freeze_copy,
    make_replay,
    resolve_device,
    seed_everything,
    set_memory_format,
    trainable_parameters,
)
from cromo_bench.tracking import Tracker


class NonFiniteLoss(CromoError):
    """A loss term became NaN or infinite."""


class Interrupted(CromoError):
    """SIGTERM or SIGINT arrived; a checkpoint was saved."""


def run_name(cfg: RunConfig) -> str:
    return f"{cfg.method}-{cfg.ssl}-{cfg.benchmark}-s{cfg.seed}"


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
        self.task_steps = [epoch_steps(self.train_y[i], cfg) * cfg.epochs_for(t)
                           for t, i in enumerate(self.task_idx)]  # training steps of each task
        self.total_steps = sum(self.task_steps)
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

        pending, self._pending_objective = self._pending_objective, None
        if pending is not None and not resumed:  # restored at a task boundary: then start the new task
            self._load_objective(pending)
        self.parts.objective.start_task(task, self.task_steps[task], self.total_steps)
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


