"""Replay memory of raw uint8 images (REFERENCE.md section 4; PEERS.md section 1, CaSSLe+).

The buffer holds un-augmented images on the training device, with their labels and task ids. It is filled only
at task boundaries (`add_task`, after training on a task) and read every step (`sample`); the replay views are
augmented by the trainer with the same pipelines T, T' as the current batch.

Policies (`cfg.buffer_policy`, `cfg.memory`, `cfg.buffer_replacement`):
- `per_task` (the reference): after each task, `memory` images of that task are drawn uniformly from its
  training images, with replacement when `buffer_replacement` (the reference's CroMo and CaSSLe+ trainers;
  duplicates can occur, classes are balanced only in expectation) or without (the reference's ER trainer).
  The buffer grows: during task t (0-based) it holds t * memory images.
- `fixed_total`: `memory` images in total, class-balanced over every class seen so far and drawn without
  replacement. At each boundary every seen class gets `memory // K` slots (K classes seen; the `memory % K`
  left-over slots go to randomly chosen classes); old classes keep a prefix of their stored images (a random
  subset, as they were stored in random order) and new classes draw theirs from the finished task.

Per-step sampling: `sample(n)` draws n indices uniformly **with replacement** over the whole pooled buffer
(the reference's `np.random.randint`). The reference ER trainer samples without replacement instead; with
replay_bs << buffer size the two differ only by rare duplicates, so one rule is used for every method.

Budgets the data cannot meet without replacement (a task or class with fewer images than its quota) raise a
one-line CromoError, checked once in `make_buffer` (before training) and again in `add_task`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData, make_tasks
from cromo_bench.errors import CromoError

POLICIES = ("per_task", "fixed_total")


class ReplayBuffer:
    """Raw uint8 images (N, C, H, W) with labels (N,) and task ids (N,), all on `device`."""

    def __init__(self, memory: int, policy: str = "per_task", replacement: bool = True,
                 device: torch.device | str = "cpu") -> None:
        if policy not in POLICIES:
            raise CromoError(f"buffer_policy '{policy}' is not allowed; choose one of: {', '.join(POLICIES)}")
        if memory <= 0:
            raise CromoError(f"a replay buffer needs memory > 0, got {memory}")
        self.memory, self.policy, self.device = memory, policy, torch.device(device)
        self.replacement = replacement and policy == "per_task"  # fixed_total never duplicates
        self.images: Tensor | None = None  # (N, C, H, W) uint8
        self.labels = torch.empty(0, dtype=torch.long, device=self.device)  # (N,)
        self.task_ids = torch.empty(0, dtype=torch.long, device=self.device)  # (N,)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def capacity(self) -> int:
        """How many images the buffer may hold now: the total for fixed_total, a growing sum for per_task."""
        if self.policy == "fixed_total":
            return self.memory
        return self.memory * (int(self.task_ids.max()) + 1 if len(self) else 0)

    # --- filling ---------------------------------------------------------------------------------------
    def add_task(self, images: Tensor, labels: Tensor, task: int, generator: torch.Generator) -> None:
        """Store images of the finished `task` (images uint8 (n, C, H, W), labels (n,)) under the policy."""
        if images.dtype != torch.uint8:
            raise CromoError(f"the replay buffer stores uint8 images, got {images.dtype}")
        if len(images) != len(labels) or len(images) == 0:
            raise CromoError(f"task {task + 1}: got {len(images)} images and {len(labels)} labels to store")
        labels = labels.to(torch.long)
        if self.policy == "per_task":
            idx = self._draw(len(images), self.memory, self.replacement, generator, f"task {task + 1}")
            self._append(images[idx.to(images.device)], labels[idx.to(labels.device)], task)
        else:
            self._rebalance(images, labels, task, generator)

    def _draw(self, n: int, k: int, replacement: bool, generator: torch.Generator, what: str) -> Tensor:
        """k indices into range(n) on the CPU, uniformly with or without replacement."""
        if replacement:
            return torch.randint(n, (k,), generator=generator)
        if k > n:
            raise CromoError(f"{what} has {n} training images but the buffer needs {k} of them without "
                             f"replacement; lower memory or set buffer_replacement=true (per_task only)")
        return torch.randperm(n, generator=generator)[:k]

    def _append(self, images: Tensor, labels: Tensor, task: int) -> None:
        images = images.to(self.device)
        self.images = images if self.images is None else torch.cat([self.images, images])
        self.labels = torch.cat([self.labels, labels.to(self.device)])
        self.task_ids = torch.cat([self.task_ids, torch.full((len(labels),), task, device=self.device)])

    def _rebalance(self, images: Tensor, labels: Tensor, task: int, generator: torch.Generator) -> None:
        """fixed_total: re-split `memory` slots evenly over all classes seen so far (old and new)."""
        stored = set(self.labels.tolist())
        new_classes = [c for c in labels.unique().tolist() if c not in stored]
        classes = sorted(stored | set(new_classes))
        quota = quotas(self.memory, classes, generator)
        keep = []  # indices into the current buffer, per old class
        for c in classes:
            if c in new_classes:
                continue
            where = torch.nonzero(self.labels == c).flatten()  # stored in random order: keep a prefix
            keep.append(where[: quota[c]])
        kept = torch.cat(keep) if keep else torch.empty(0, dtype=torch.long, device=self.device)
        if self.images is not None:
            self.images = self.images[kept]
        self.labels, self.task_ids = self.labels[kept], self.task_ids[kept]
        for c in new_classes:
            where = torch.nonzero(labels == c).flatten().cpu()  # (n_c,)
            pick = where[self._draw(len(where), quota[c], False, generator, f"class {c} of task {task + 1}")]
            self._append(images[pick.to(images.device)], labels[pick.to(labels.device)], task)

    # --- reading ---------------------------------------------------------------------------------------
    def sample_indices(self, n: int, generator: torch.Generator) -> Tensor:
        """n indices drawn uniformly with replacement (REFERENCE.md section 4), on the buffer's device. They are
        drawn on the host and copied without blocking (pageable memory is staged at once), so a CUDA step does
        not wait for the GPU here."""
        if len(self) == 0:
            raise CromoError("cannot sample from an empty replay buffer (it is filled at the end of task 1)")
        return torch.randint(len(self), (n,), generator=generator).to(self.device, non_blocking=True)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n stored images, uint8 (n, C, H, W) on the buffer's device."""
        idx = self.sample_indices(n, generator)  # raises on an empty buffer
        assert self.images is not None
        return self.images[idx]

    def class_counts(self) -> dict[int, int]:
        values, counts = self.labels.unique(return_counts=True)
        return {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}

    def task_counts(self) -> dict[int, int]:
        values, counts = self.task_ids.unique(return_counts=True)
        return {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}

    # --- checkpointing ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"images": self.images, "labels": self.labels, "task_ids": self.task_ids}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        images = state["images"]
        self.images = None if images is None else images.to(self.device)
        self.labels = state["labels"].to(self.device)
        self.task_ids = state["task_ids"].to(self.device)


def quotas(memory: int, classes: list[int], generator: torch.Generator) -> dict[int, int]:
    """memory // K slots per class, plus one for `memory % K` classes chosen at random."""
    base, extra = divmod(memory, len(classes))
    lucky = set(torch.randperm(len(classes), generator=generator)[:extra].tolist())
    return {c: base + (1 if i in lucky else 0) for i, c in enumerate(classes)}


def check_budget(cfg: RunConfig, data: ImageData) -> None:
    """Fail before training when a budget cannot be met without replacement (a one-line CromoError)."""
    tasks = make_tasks(data.num_classes, cfg.task_sizes, cfg.class_order_seed)
    per_class = torch.bincount(data.train_y.to(torch.long), minlength=data.num_classes).tolist()
    if cfg.buffer_policy == "per_task":
        if cfg.buffer_replacement:
            return
        for t, classes in enumerate(tasks):
            n = sum(per_class[c] for c in classes)
            if n < cfg.memory:
                raise CromoError(f"memory={cfg.memory} per task exceeds the {n} training images of task "
                                 f"{t + 1} (buffer_policy=per_task without replacement); lower memory or "
                                 "set buffer_replacement=true")
        return
    seen = 0
    for t, classes in enumerate(tasks[:-1]):  # the last task is never stored
        seen += len(classes)
        need = -(-cfg.memory // seen)  # the largest quota a new class may get
        short = [c for c in classes if per_class[c] < need]
        if short:
            raise CromoError(f"memory={cfg.memory} (fixed_total) gives up to {need} slots per class after "
                             f"task {t + 1}, but class {short[0]} has {per_class[short[0]]} training images; "
                             "lower memory")


def make_buffer(cfg: RunConfig, data: ImageData, device: torch.device | str) -> ReplayBuffer:
    """The run's buffer (the trainer calls this when the method needs one and cfg.memory > 0)."""
    buffer = ReplayBuffer(cfg.memory, cfg.buffer_policy, cfg.buffer_replacement, device)
    check_budget(cfg, data)
    return buffer
