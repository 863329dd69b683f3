"""The task-confusion study (REFERENCE.md section 12): how classes are grouped into minibatches.

Joint training on all classes, with the minibatches drawn three ways (`cfg.minibatch`):
- `random`: one shuffled pass over the data (the offline reference).
- `cil`: the classes are split into virtual tasks (`cfg.eval_task_sizes`); each virtual task's samples are
  shuffled and batched on their own, and the steps take one batch from each virtual task in turn
  (round-robin). Every minibatch holds the classes of one virtual task only, yet every epoch sees all tasks.
- `dil`: the data are split into T = len(cfg.eval_task_sizes) class-stratified shards (the k-th sample of
  every class, in dataset order, goes to shard k mod T; fixed across epochs as the reference's loaders);
  each shard is shuffled and batched on its own, round-robin. Every minibatch spans all classes.
Evaluation (LA / TP / WP) uses the virtual split, so TP measures task confusion between the virtual tasks.
The same `eval_task_sizes` also gives the offline upper bounds their TP / WP on the standard split.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cromo_bench.errors import CromoError

MIN_BATCH = 2  # BatchNorm needs two samples: a shorter trailing batch is dropped


def _batched(idx: Tensor, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """Shuffle `idx` and cut it into batches; a trailing batch smaller than 2 is dropped (BatchNorm)."""
    perm = idx[torch.randperm(len(idx), generator=generator)]
    out = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    return [b for b in out if len(b) >= MIN_BATCH]


def round_robin(groups: list[list[Tensor]]) -> list[Tensor]:
    """Interleave per-group batch lists: g0[0], g1[0], ..., g0[1], g1[1], ...; shorter lists drop out."""
    longest = max((len(g) for g in groups), default=0)
    return [g[i] for i in range(longest) for g in groups if i < len(g)]


def cil_groups(labels: Tensor, virtual_tasks: list[list[int]]) -> list[Tensor]:
    """Positions into `labels` (N,) of each virtual task's classes (empty tasks left out)."""
    labels = labels.cpu()
    groups = [torch.nonzero(torch.isin(labels, torch.tensor(c, dtype=labels.dtype))).flatten()
              for c in virtual_tasks]
    return [g for g in groups if len(g)]


def cil_batches(labels: Tensor, virtual_tasks: list[list[int]], batch_size: int,
                generator: torch.Generator) -> list[Tensor]:
    """Batches of positions into `labels` (N,), each from one virtual task's classes, round-robin."""
    return round_robin([_batched(g, batch_size, generator) for g in cil_groups(labels, virtual_tasks)])


def dil_shards(labels: Tensor, num_shards: int) -> list[Tensor]:
    """Class-stratified shards: the k-th sample of each class (dataset order) goes to shard k mod T."""
    labels = labels.cpu()
    shard = torch.empty(len(labels), dtype=torch.long)
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        shard[idx] = torch.arange(len(idx)) % num_shards
    return [torch.nonzero(shard == k).flatten() for k in range(num_shards)]


def dil_batches(labels: Tensor, num_shards: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """Batches of positions into `labels`, each from one class-stratified shard, round-robin."""
    return round_robin([_batched(s, batch_size, generator) for s in dil_shards(labels, num_shards) if len(s)])


def virtual_tasks(num_classes: int, eval_task_sizes: tuple[int, ...],
                  class_order_seed: int | None) -> list[list[int]]:
    """The virtual split (same class order as the training split)."""
    from cromo_bench.data import make_tasks

    return make_tasks(num_classes, eval_task_sizes, class_order_seed)


def _check(mode: str, labels: Tensor | None, groups: list[list[int]] | None) -> None:
    if mode not in ("random", "cil", "dil"):
        raise CromoError(f"minibatch '{mode}' is not allowed; choose one of: random, cil, dil")
    if mode != "random" and (labels is None or not groups):
        raise CromoError(f"minibatch '{mode}' needs eval_task_sizes (the virtual tasks), e.g. "
                         "--set eval_task_sizes=10,10,10,10,10,10,10,10,10,10")


def minibatches(mode: str, n: int, batch_size: int, generator: torch.Generator, labels: Tensor | None = None,
                groups: list[list[int]] | None = None) -> list[Tensor]:
    """Index batches over `n` samples for `cfg.minibatch` = mode (see the module docstring)."""
    _check(mode, labels, groups)
    if mode == "random":
        return _batched(torch.arange(n), batch_size, generator)
    assert labels is not None and groups is not None
    if mode == "cil":
        return cil_batches(labels, groups, batch_size, generator)
    return dil_batches(labels, len(groups), batch_size, generator)


def count_minibatches(mode: str, n: int, batch_size: int, labels: Tensor | None = None,
                      groups: list[list[int]] | None = None) -> int:
    """How many batches `minibatches` returns (the same for every draw): each group is batched on its own,
    so CIL / DIL epochs hold one short batch per virtual task or shard, not one per epoch."""
    _check(mode, labels, groups)
    if mode == "random":
        sizes = [n]
    else:
        assert labels is not None and groups is not None
        parts = cil_groups(labels, groups) if mode == "cil" else dil_shards(labels, len(groups))
        sizes = [len(g) for g in parts]
    return sum(size // batch_size + (1 if size % batch_size >= MIN_BATCH else 0) for size in sizes)


def eval_split(tasks: list[list[int]], eval_tasks: list[list[int]] | None,
               task: int) -> tuple[list[list[int]], int]:
    """The split to evaluate with after training task `task`, and the index of its last seen task.

    Without `eval_tasks` that is (`tasks`, `task`). With them (offline bounds, the confusion study), the
    evaluation tasks must nest in the training tasks: the seen ones are those inside tasks[0..task].
    """
    if not eval_tasks:
        return tasks, task
    seen = {c for t in tasks[: task + 1] for c in t}
    covered = [all(c in seen for c in t) for t in eval_tasks]
    if any(covered[i + 1] and not covered[i] for i in range(len(covered) - 1)) or (
        {c for t, ok in zip(eval_tasks, covered, strict=True) if ok for c in t} != seen
    ):
        raise CromoError("eval_task_sizes must split each training task into whole evaluation tasks")
    return eval_tasks, sum(covered) - 1
