"""`cromo-bench perf`: time the real training step, and compare it with its compute floor and with a
reference-style pipeline (issue 8; REFERENCE.md sections 2.4, 4, 8 and 14.18).

No dataset is needed: the images are random uint8 tensors of the benchmark's shape (C x S x S, its number of
classes). A `Trainer` is built as for a run, task 1's boundary is passed (old encoder frozen, buffer filled
from task 1), and a step of task 2 is timed, so the old-model and replay paths are active (single-task
benchmarks time task 1). Each pipeline runs `steps` steps per repeat after a warm-up; repeats are interleaved
(the order rotates) so that machine noise hits all pipelines alike; CUDA is synchronised around each timing.

- step: `Trainer.step`, the training loop's own step: batched on-device augmentation of the current batch
  and of replayed buffer images, the method's loss terms (bf16 autocast on CUDA), backward, optimizer step,
  the objective's after-step update, and the loss meter's on-device accumulation.
- floor (the compute floor): the same `method.loss_terms` through the same networks (old model included)
  on fixed, pre-augmented views (replay returns fixed pre-augmented buffer views), plus backward, with the
  gradients released between steps. No augmentation, sampling, optimizer step or logging.
- reference: the reference code's structure (REFERENCE.md sections 2.4, 4, 14.18; its CroMo trainers): a CPU
  DataLoader over float images in [0, 1] whose items are (x, T(x), T'(x), y) with per-sample torchvision
  transforms T, T' (the same parameters; a PIL round trip for BYOL); buffer images augmented one at a time in
  a Python loop, each appended with torch.cat; fp32 and NCHW; the optimizer stepping one parameter at a time
  (`foreach=False`: the reference's LARS loop, the same update); per-step `.item()` logging. Same model,
  objective, method and optimizer classes, in its own copy with the same initial weights. The CroMo-Mixup
  reference also draws the buffer indices with numpy, as here.
  Its transforms, dataset and replay loop are in `cromo_bench.reference_style`.

overhead = step / floor and speed-up = reference / step, each the median of the per-repeat ratios.
Augmentation alone: the two views of the current batch plus `replay_bs` buffer images, batched vs the
per-sample transforms, and the replay batch alone vs the one-at-a-time loop. FLOPs: FlopCounterMode over one
floor step (forward and backward); achieved FLOP/s = FLOPs / step time.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cromo_bench.augment import DEFAULT_PIPELINE, PIPELINES
from cromo_bench.config import RunConfig
from cromo_bench.data import CIFAR10_STATS, CIFAR100_STATS, IMAGENET_STATS, ImageData, make_tasks
from cromo_bench.method import Step
from cromo_bench.parts import augment_views, build_parts, trainable_parameters
from cromo_bench.reference_style import ReferenceDataset, one_at_a_time, per_sample, reference_view, single_thread
from cromo_bench.train import LossMeter, Trainer, batches, epoch_steps

STATS = {"cifar10": CIFAR10_STATS, "cifar100": CIFAR100_STATS, "tinyimagenet": IMAGENET_STATS}
TRAIN_PER_CLASS = {"cifar10": 5000, "cifar100": 500, "tinyimagenet": 500}  # training images per class



@dataclass
class PerfReport:
    """Medians in seconds (per step, or per call for the augmentation figures) and derived figures."""

    title: str
    setting: str
    batch: int
    step_s: float
    floor_s: float
    reference_s: float
    overhead: float
    speedup: float
    aug_batched_s: float
    aug_per_sample_s: float
    replay_batched_s: float
    replay_loop_s: float
    flops: float
    total_steps: int | None
    schedule: str

    @property
    def images_per_s(self) -> float:
        return self.batch / self.step_s

    @property
    def estimated_s(self) -> float | None:
        return None if self.total_steps is None else self.total_steps * self.step_s

    def render(self) -> str:
        est = self.estimated_s
        estimate = "n/a (unknown dataset size)" if est is None else (
            f"{est / 3600:.1f} h" if est >= 3600 else f"{est / 60:.1f} min")
        return "\n".join([
            self.title, self.setting,
            f"step (cromo-bench):          {self.step_s:.4f} s/step   images/s {self.images_per_s:.1f}   "
            f"steps/s {1 / self.step_s:.3f}",
            f"compute floor (fwd+bwd):     {self.floor_s:.4f} s/step",
            f"reference-style pipeline:    {self.reference_s:.4f} s/step",
            f"overhead (step / floor):     {self.overhead:.3f}",
            f"speed-up (reference / step): {self.speedup:.2f}x",
            f"augmentation, current + replay, two views: batched {self.aug_batched_s:.4f} s, per-sample "
            f"{self.aug_per_sample_s:.4f} s: {self.aug_per_sample_s / self.aug_batched_s:.1f}x",
            f"replay augmentation, two views: batched {self.replay_batched_s:.4f} s, one-at-a-time loop "
            f"{self.replay_loop_s:.4f} s: {self.replay_loop_s / self.replay_batched_s:.1f}x",
            f"FLOPs per step: {self.flops / 1e9:.2f} GFLOP (forward + backward); achieved "
            f"{self.flops / self.step_s / 1e9:.1f} GFLOP/s (step), {self.flops / self.floor_s / 1e9:.1f} "
            "GFLOP/s (floor)",
            f"benchmark: {self.schedule}; estimated training time on this device: {estimate} "
            "(every step timed as a later-task step; evaluation excluded)",
        ])


# --- synthetic data and the benchmark's size ------------------------------------------------------------------


def synthetic_data(cfg: RunConfig, seed: int = 0) -> ImageData:
    """Random uint8 images of the benchmark's shape; enough per class for a full batch and the buffer."""
    k, smallest = sum(cfg.task_sizes), min(cfg.task_sizes)
    per_class = max(2, -(-cfg.batch_size // smallest), -(-cfg.memory // smallest)) + 1
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (k * per_class, 3, cfg.image_size, cfg.image_size), generator=g, dtype=torch.uint8)
    y = torch.arange(k).repeat_interleave(per_class)  # (N,)
    mean, std = STATS.get(cfg.dataset, ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    return ImageData(cfg.dataset, x, y, x[::per_class], y[::per_class], tuple(map(str, range(k))), mean, std)


def benchmark_steps(cfg: RunConfig) -> tuple[int | None, str]:
    """Training steps of the whole benchmark (every task, every epoch) with the real dataset's sizes."""
    k = sum(cfg.task_sizes)
    if cfg.dataset in TRAIN_PER_CLASS:
        counts = [TRAIN_PER_CLASS[cfg.dataset]] * k
    elif cfg.dataset == "digits":
        from cromo_bench.data import load_digits

        counts = torch.bincount(load_digits(cfg.image_size).train_y, minlength=k).tolist()
    else:
        return None, f"{cfg.num_tasks} tasks, training set size unknown for dataset '{cfg.dataset}'"
    if cfg.subset_per_class > 0:
        counts = [min(c, cfg.subset_per_class) for c in counts]
    tasks = make_tasks(k, cfg.task_sizes, cfg.class_order_seed)
    labels = [torch.tensor(t).repeat_interleave(torch.tensor([counts[c] for c in t])) for t in tasks]
    per_epoch = [epoch_steps(y, cfg) for y in labels]
    total = sum(s * cfg.epochs_for(t) for t, s in enumerate(per_epoch))
    return total, (f"{cfg.num_tasks} tasks, {cfg.epochs_first} + {cfg.num_tasks - 1} x {cfg.epochs_later} "
                   f"epochs, {total} steps")


# --- the three pipelines ---------------------------------------------------------------------------------------


class Bench:
    """A Trainer at a later task, plus the floor's fixed inputs and the reference-style copy."""

    def __init__(self, cfg: RunConfig, data: ImageData, ref_workers: int = 0, ref_steps: int = 1) -> None:
        from cromo_bench.tracking import MemoryTracker

        self.cfg, self.trainer = cfg, Trainer(cfg, MemoryTracker(), data, progress=False)
        t, self.device = self.trainer, self.trainer.device
        self.task = 1 if cfg.num_tasks > 1 else 0
        if self.task:
            t.carry_over(0)
        t.begin_task(self.task, resumed=False)
        idx = t.task_idx[self.task]
        full = [b for b in batches(t.train_y[idx].cpu(), cfg, t.generator) if len(b) == cfg.batch_size]
        self.sel = [idx[b.to(self.device)] for b in full]  # (B,) image indices on the device
        self.replay = t.replay()
        self.meter = LossMeter()
        specs, pil = PIPELINES.get(cfg.ssl, DEFAULT_PIPELINE), cfg.ssl == "byol"
        size = cfg.crop_size or data.image_size
        self.views = (reference_view(specs[0], size, data.mean, data.std, pil),
                      reference_view(specs[1], size, data.mean, data.std, pil))
        self.x1, self.x2 = augment_views(t.parts.augment, t.train_x[self.sel[0]], t.memory_format)
        self._fixed: dict[int, tuple[Tensor, Tensor]] = {}
        self._build_reference(data, ref_workers, ref_steps)

    # the step and the floor
    def step(self, i: int) -> None:
        terms = self.trainer.step(self.task, self.sel[i % len(self.sel)], self.replay)
        self.meter.add(terms, i)

    def fixed_replay(self, n: int) -> tuple[Tensor, Tensor]:
        if n not in self._fixed:  # drawn and augmented once (in the warm-up)
            self._fixed[n] = self.replay(n)
        return self._fixed[n]

    def floor(self, i: int, step: Step | None = None) -> None:
        t = self.trainer
        assert t.optimizer is not None
        replay = self.fixed_replay if self.replay is not None else None
        step = step or t.make_step(self.task, self.x1, self.x2, replay, t.train_y[self.sel[0]])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.amp):
            terms = t.parts.method.loss_terms(step)
            loss = torch.stack([v.float() for v in terms.values()]).sum()
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()

    def count_flops(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        t, p = self.trainer, self.trainer.parts
        replay = self.fixed_replay if self.replay is not None else None
        plain = Step(self.x1, self.x2, self.task, p.encoder, p.objective, p.old_encoder, replay, t.generator,
                     t.train_y[self.sel[0]])  # uncompiled modules: every op is seen
        with FlopCounterMode(display=False) as counter:
            self.floor(0, plain)
        return float(counter.get_total_flops())

    # the reference-style pipeline
    def _build_reference(self, data: ImageData, workers: int, steps: int) -> None:
        from cromo_bench.optim import build_optimizer

        cfg, t = self.cfg, self.trainer
        ref = build_parts(dataclasses.replace(cfg, compile=False), data, self.device)  # fp32, NCHW
        for mine, theirs in ((ref.encoder, t.parts.encoder), (ref.objective, t.parts.objective),
                             (ref.method, t.parts.method)):
            mine.load_state_dict(theirs.state_dict())
        ref.objective.start_task(self.task, t.task_steps[self.task], t.total_steps)
        if t.parts.old_encoder is not None:
            ref.old_encoder = copy.deepcopy(ref.encoder)  # the reference: a frozen copy under no_grad
            ref.old_encoder.requires_grad_(False)
            ref.old_encoder.train(cfg.old_model_bn == "train")
        buffer = t.parts.buffer
        self.ref_buffer = (buffer.images.float() / 255.0 if buffer is not None and buffer.images is not None
                           else None)  # (M, C, H, W) float on the device, as the reference keeps it
        # the reference's optimizer loops over the parameters (its LARS, or SGD without foreach)
        self.ref, self.ref_opt = ref, build_optimizer(trainable_parameters(ref), cfg, t.base_lr, foreach=False)
        self.rng = np.random.default_rng(cfg.seed)
        self.ref_log: list[dict[str, float]] = []
        self.workers = workers
        idx = t.task_idx[self.task].cpu()
        pick = idx[torch.randint(len(idx), (steps * cfg.batch_size,))]  # an epoch of `steps` batches
        dataset = ReferenceDataset(t.train_x.cpu()[pick].float() / 255.0, t.train_y.cpu()[pick], self.views)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                                                  num_workers=workers, drop_last=True,
                                                  persistent_workers=workers > 0)

    def reference_replay(self, n: int) -> tuple[Tensor, Tensor]:
        assert self.ref_buffer is not None
        idx = self.rng.integers(len(self.ref_buffer), size=n)  # np.random.randint, with replacement
        return one_at_a_time(self.ref_buffer[torch.from_numpy(idx).to(self.device)], self.views)

    def reference(self, steps: int) -> None:
        """`steps` reference-style steps: (the start of) one epoch of the DataLoader, whose workers persist."""
        epoch = iter(self.loader)
        for _ in range(steps):
            with single_thread():
                batch = next(epoch, None)
                if batch is None:  # more steps than one epoch holds (a long warm-up): a new epoch
                    epoch = iter(self.loader)
                    batch = next(epoch)
            self.reference_step(*batch)

    def reference_step(self, x: Tensor, x1: Tensor, x2: Tensor, y: Tensor) -> None:
        ref = self.ref
        x, x1, x2, y = x.to(self.device), x1.to(self.device), x2.to(self.device), y.to(self.device)
        replay = self.reference_replay if self.ref_buffer is not None and self.task > 0 else None
        step = Step(x1, x2, self.task, ref.encoder, ref.objective, ref.old_encoder, replay,
                    self.trainer.generator, y)
        terms = ref.method.loss_terms(step)
        loss = torch.stack(list(terms.values())).sum()
        self.ref_opt.zero_grad()
        loss.backward()
        self.ref_opt.step()
        ref.objective.after_step(ref.encoder)
        self.ref_log.append({k: v.item() for k, v in terms.items()})  # per-step logging (a host sync)


# --- timing --------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn: Callable[[], Any]) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _loop(fn: Callable[[int], Any], steps: int) -> Callable[[], None]:
    def run() -> None:
        for i in range(steps):
            fn(i)

    return run


def _augmentation_jobs(bench: Bench) -> dict[str, Callable[[], Any]]:
    """Augmentation alone: the current batch plus `replay_bs` stored images, batched vs per-sample, and the
    replay batch (sampling included) batched vs the one-at-a-time loop."""
    t, cfg = bench.trainer, bench.cfg
    aug, fmt, buffer = t.parts.augment, t.memory_format, t.parts.buffer
    current = t.train_x[bench.sel[0]]  # (B, C, H, W) uint8 on the device
    has_buffer = buffer is not None and len(buffer) > 0

    def stored() -> Tensor:  # (R, C, H, W) uint8; the current batch stands in without a buffer
        return buffer.sample(cfg.replay_bs, t.generator) if has_buffer else current[: cfg.replay_bs]  # type: ignore

    cur_f, stored_f = current.cpu().float() / 255.0, stored().float() / 255.0
    return {
        "aug_batched": lambda: (augment_views(aug, current, fmt), augment_views(aug, stored(), fmt)),
        # the DataLoader's per-sample work (on the CPU), then the replay loop (on the device)
        "aug_per_sample": lambda: (per_sample(cur_f, bench.views), one_at_a_time(stored_f, bench.views)),
        "replay_batched": lambda: augment_views(aug, stored(), fmt),
        "replay_loop": lambda: one_at_a_time(stored_f, bench.views),
    }


def measure(cfg: RunConfig, *, steps: int = 10, repeats: int = 5, ref_workers: int = 0,
            warmup: int | None = None) -> PerfReport:
    """Time `cfg`'s training step (see the module docstring): `steps` steps per repeat, medians over the
    interleaved repeats."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    bench = Bench(cfg, synthetic_data(cfg, cfg.seed), ref_workers, steps)
    dev = bench.device
    warm = warmup if warmup is not None else (3 if cfg.compile else 2 if dev.type == "cuda" else 1)
    for fn in (bench.step, bench.floor):
        _loop(fn, warm)()
    bench.reference(warm)
    jobs: dict[str, Callable[[], Any]] = {"step": _loop(bench.step, steps), "floor": _loop(bench.floor, steps),
                                          "reference": lambda: bench.reference(steps)}
    jobs |= _augmentation_jobs(bench)
    times: dict[str, list[float]] = {k: [] for k in jobs}
    names = list(jobs)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order
            times[name].append(_timed(dev, jobs[name]))
    bench.meter.check(bench.task)  # the timed steps stayed finite
    return _report(cfg, bench, times, steps, bench.count_flops())


def _report(cfg: RunConfig, bench: Bench, times: dict[str, list[float]], steps: int, flops: float) -> PerfReport:
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = [a / b for a, b in zip(times["step"], times["floor"], strict=True)]
    speed = [a / b for a, b in zip(times["reference"], times["step"], strict=True)]
    t = bench.trainer
    total, schedule = benchmark_steps(cfg)
    precision = "bf16 autocast, channels_last" if t.amp else "fp32, NCHW"
    threads = f", {torch.get_num_threads()} threads" if t.device.type == "cpu" else ""
    device = torch.cuda.get_device_name(t.device) if t.device.type == "cuda" else "cpu"
    title = (f"cromo-bench perf: {cfg.method} + {cfg.ssl} on {cfg.benchmark} shapes (synthetic uint8 "
             f"3x{cfg.image_size}x{cfg.image_size}, {sum(cfg.task_sizes)} classes); {device}{threads}; "
             f"{precision}; compile {'on' if cfg.compile else 'off'}")
    setting = (f"batch {cfg.batch_size} + replay {cfg.replay_bs}, {cfg.backbone} width {cfg.width}, "
               f"projector {cfg.proj_hidden}-{cfg.proj_out}, task {bench.task + 1} of {cfg.num_tasks}; "
               f"{steps} steps x {len(times['step'])} interleaved repeats, medians; reference DataLoader "
               f"workers {bench.workers}")
    return PerfReport(title, setting, cfg.batch_size, med["step"] / steps, med["floor"] / steps,
                      med["reference"] / steps, statistics.median(ratio), statistics.median(speed),
                      med["aug_batched"], med["aug_per_sample"], med["replay_batched"], med["replay_loop"], flops,
                      total, schedule)
