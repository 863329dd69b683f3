"""Metrics over probe logits and accuracy matrices (REFERENCE.md section 11.2, PEERS.md section 5).

LA is the task-agnostic accuracy over all seen classes; TP the share of samples whose predicted class falls in
their true task; WP the accuracy among those, so LA = TP x WP (`WP_oracle`: argmax within the true task only).
From R[i][j] (accuracy on task j after task i): the forgetting of task j is its best accuracy before the last
task minus its final one, averaged over j < T - 1; average accuracy and backward transfer likewise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# --- LA / TP / WP and accuracies (REFERENCE.md 11.2) --------------------------------------------------


def _owner(tasks: list[list[int]], num_columns: int) -> Tensor:
    """Task index of every logit column; -1 for a class in no task."""
    owner = torch.full((num_columns,), -1, dtype=torch.long)
    for j, task in enumerate(tasks):
        if (owner[task] >= 0).any():
            raise ValueError("tasks must be disjoint")
        owner[task] = j
    return owner


def predict(logits: Tensor, classes: Sequence[int]) -> Tensor:
    """Class ids of the argmax over the columns `classes` only. logits (N, C) -> (N,)."""
    cols = torch.tensor(list(classes), dtype=torch.long, device=logits.device)
    return cols[logits[:, cols].argmax(dim=1)]


def task_metrics(logits: Tensor, targets: Tensor, tasks: list[list[int]]) -> dict[str, float]:
    """LA, TP, WP (conditional, LA = TP x WP; 0 when TP = 0) and WP_oracle (task-restricted argmax).

    Column c of `logits` (N, C) is class c. The argmax runs over the classes named in `tasks` only, so passing
    the seen tasks restricts it to the seen classes (masking unseen columns to -inf gives the same result).
    Every target must belong to one of `tasks`.
    """
    logits, targets = logits.detach().float().cpu(), targets.cpu()
    owner = _owner(tasks, logits.shape[1])  # (C,)
    true_task = owner[targets]  # (N,)
    if len(targets) == 0 or (true_task < 0).any():
        raise ValueError("targets must be non-empty and belong to the given tasks")
    pred = predict(logits, [c for task in tasks for c in task])  # (N,)
    task_ok = owner[pred] == true_task  # (N,)
    correct = pred == targets  # (N,), implies task_ok
    in_task = owner[None, :] == true_task[:, None]  # (N, C)
    oracle = logits.masked_fill(~in_task, -math.inf).argmax(dim=1)  # (N,)
    n, n_task_ok, n_correct = len(targets), int(task_ok.sum()), int(correct.sum())
    return {
        "LA": n_correct / n,
        "TP": n_task_ok / n,
        "WP": n_correct / n_task_ok if n_task_ok else 0.0,
        "WP_oracle": float((oracle == targets).float().mean()),
    }


def per_task_accuracy(logits: Tensor, targets: Tensor, tasks: list[list[int]]) -> list[float]:
    """Task-agnostic accuracy (argmax over all classes of `tasks`) on each task's samples; nan if none."""
    logits, targets = logits.detach().cpu(), targets.cpu()
    correct = predict(logits, [c for task in tasks for c in task]) == targets  # (N,)
    out = []
    for task in tasks:
        mask = torch.isin(targets, torch.tensor(task, dtype=targets.dtype))
        out.append(float(correct[mask].float().mean()) if mask.any() else math.nan)
    return out


def per_class_accuracy(logits: Tensor, targets: Tensor, classes: Sequence[int]) -> dict[int, float]:
    """Accuracy (argmax over `classes`) on each class's samples; nan if none."""
    logits, targets = logits.detach().cpu(), targets.cpu()
    correct = predict(logits, classes) == targets  # (N,)
    return {int(c): float(correct[targets == c].float().mean()) if (targets == c).any() else math.nan
            for c in classes}


# --- accuracy matrix (PEERS.md section 5) ---------------------------------------------------------------


def continual_summary(R: Sequence[Sequence[float | None]]) -> dict[str, float]:
    """avg_acc, forgetting and bwt of an accuracy matrix, R[i][j] = accuracy on task j after task i (j <= i).

    With T = len(R): avg_acc = mean_j R[T-1][j];
    forgetting = mean_{j<T-1} (max_{j<=i<T-1} R[i][j] - R[T-1][j]);
    bwt = mean_{j<T-1} (R[T-1][j] - R[j][j]). Forgetting and bwt are 0.0 with one task.
    """
    T = len(R)
    if T == 0:
        raise ValueError("empty accuracy matrix")

    def at(i: int, j: int) -> float:
        value = R[i][j] if j < len(R[i]) else None
        if value is None:
            raise ValueError(f"R[{i}][{j}] is undefined; every row i needs entries 0..i")
        return float(value)

    last = [at(T - 1, j) for j in range(len(R[T - 1])) if R[T - 1][j] is not None]
    forget = [max(at(i, j) for i in range(j, T - 1)) - at(T - 1, j) for j in range(T - 1)]
    bwt = [at(T - 1, j) - at(j, j) for j in range(T - 1)]
    return {
        "avg_acc": sum(last) / len(last),
        "forgetting": sum(forget) / len(forget) if forget else 0.0,
        "bwt": sum(bwt) / len(bwt) if bwt else 0.0,
    }
