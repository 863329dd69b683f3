"""Evaluation protocol: linear probe, LA / TP / WP, kNN monitor, accuracy matrix (REFERENCE.md section 11).

- Linear probe (11.1) on the frozen backbone, in eval mode, over the classes seen so far. Two modes:
  `paper`: features recomputed every epoch from random-resized-crop (scale 0.08-1, ratio 3/4-4/3) +
  horizontal-flip views of the training images, batch cfg.probe_batch_size, SGD (cfg.probe_lr, momentum 0.9,
  wd 0), cosine per epoch to 0.002 (the reference's absolute floor), LA from the last epoch. Test images:
  normalise only (CIFAR-100 / TinyImageNet: resize to 36/32 resp. 73/64 of the size and centre crop first,
  as the reference's loaders).
  `fast`: features (normalise only) computed once and held on the device; same head, optimiser and per-epoch
  cosine schedule, to cfg.probe_lr / 100.
  The head is a zero-initialised Linear over the seen classes only (deterministic; the problem is convex);
  its logits are scattered into columns = class ids, unseen columns = -inf.
- TP / WP (11.2): WP is accuracy conditional on a correct task prediction, so LA = TP x WP exactly;
  `WP_oracle` is the argmax restricted to the true task's classes.
- kNN monitor (11.3): weighted kNN, K = cfg.knn_k, weights exp(cos / cfg.knn_sigma), global and per task.
- Accuracy matrix R[i][j] (accuracy on task j after task i) -> average accuracy, forgetting (max - final,
  PEERS.md section 5) and backward transfer.
All accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData, normalize, task_indices
from cromo_bench.errors import CromoError

PAPER_MIN_LR = 0.002  # REFERENCE.md 11.1: cosine annealing to 0.002
FEATURE_BATCH = 512  # batch size of feature extraction (inference only)
# test preprocessing of the reference's loaders: (resize numerator, crop denominator, interpolation)
_TEST_RESIZE = {"cifar100": (36, 32, "bicubic"), "tinyimagenet": (73, 64, "bilinear")}
_BICUBIC_TRAIN = ("cifar100", "tinyimagenet")  # RandomResizedCrop interpolation (bilinear otherwise)


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


# --- features and the linear probe (REFERENCE.md 11.1) --------------------------------------------------


def extract_features(backbone: nn.Module, images_uint8: Tensor, mean: Sequence[float], std: Sequence[float],
                     batch_size: int, device: torch.device) -> Tensor:
    """Backbone features (N, F) on `device` of normalised uint8 images (N, C, H, W), in eval mode.

    Every submodule's train/eval flag is restored afterwards.
    """
    modes = [(m, m.training) for m in backbone.modules()]
    backbone.eval()
    chunks = []
    try:
        with torch.inference_mode():
            for x in images_uint8.split(batch_size):
                x = normalize(x.to(device, non_blocking=True), tuple(mean), tuple(std))  # (B, C, H, W)
                chunks.append(backbone(x).flatten(1).float())  # (B, F)
    finally:
        for m, training in modes:
            m.training = training
    if not chunks:
        raise ValueError("no images to extract features from")
    return torch.cat(chunks)  # (N, F); cat outside inference mode gives a normal tensor


def random_resized_crop_flip(x: Tensor, scale: tuple[float, float] = (0.08, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3), mode: str = "bilinear",
                             generator: torch.Generator | None = None) -> Tensor:
    """Per-sample RandomResizedCrop (torchvision's sampling, 10 tries, fallback: whole image) + flip (p=0.5).

    x (B, C, H, W) float -> (B, C, H, W), one affine grid_sample. Drawn from `generator` on the CPU (kornia's
    version draws from the global RNG, which would make the probe depend on unrelated code).
    """
    B, C, H, W = x.shape
    target = H * W * torch.empty(B, 10).uniform_(*scale, generator=generator)  # (B, 10) areas
    aspect = torch.empty(B, 10).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator).exp()
    w, h = (target * aspect).sqrt().round(), (target / aspect).sqrt().round()  # (B, 10)
    ok = (w >= 1) & (w <= W) & (h >= 1) & (h <= H)  # (B, 10)
    first = ok.float().argmax(dim=1, keepdim=True)  # (B, 1), first valid try
    w = torch.where(ok.any(1), w.gather(1, first).squeeze(1), torch.tensor(float(W)))  # (B,)
    h = torch.where(ok.any(1), h.gather(1, first).squeeze(1), torch.tensor(float(H)))  # (B,)
    u = torch.rand(B, 3, generator=generator)  # (B, 3)
    top, left = (u[:, 0] * (H - h + 1)).floor(), (u[:, 1] * (W - w + 1)).floor()  # (B,)
    sign = torch.where(u[:, 2] < 0.5, -1.0, 1.0)  # horizontal flip
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sign * w / W, (2 * left + w) / W - 1
    theta[:, 1, 1], theta[:, 1, 2] = h / H, (2 * top + h) / H - 1
    grid = F.affine_grid(theta.to(x), [B, C, H, W], align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)


def _cosine_lr(epoch: int, epochs: int, lr: float, min_lr: float) -> float:
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def fit_linear_head(batch_features: Callable[[Tensor], Tensor], targets: Tensor, feat_dim: int,
                    num_outputs: int, epochs: int, lr: float, min_lr: float, batch_size: int,
                    generator: torch.Generator | None = None) -> nn.Linear:
    """Cross-entropy Linear head; SGD momentum 0.9, wd 0, cosine per epoch from `lr` to `min_lr`.

    `batch_features(idx)` returns the features (B, F) of the training samples idx (B,); targets (N,) in
    [0, num_outputs), on the training device. Mini-batches are a fresh permutation every epoch.
    """
    head = nn.Linear(feat_dim, num_outputs).to(targets.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(epoch, epochs, lr, min_lr)
        order = torch.randperm(len(targets), generator=generator).to(targets.device)  # (N,)
        for idx in order.split(batch_size):
            loss = F.cross_entropy(head(batch_features(idx)), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return head


@dataclass(frozen=True)
class ProbeResult:
    """Test logits (N_test, num_classes) on the CPU, unseen columns -inf; targets (N_test,); wall time."""

    logits: Tensor
    targets: Tensor
    classes: list[int]
    mode: str
    train_seconds: float


def _remap(labels: Tensor, classes: list[int], num_classes: int) -> Tensor:
    """Class ids -> positions in `classes`. (N,) -> (N,)."""
    lut = torch.full((num_classes,), -1, dtype=torch.long, device=labels.device)
    lut[torch.tensor(classes, device=labels.device)] = torch.arange(len(classes), device=labels.device)
    return lut[labels]


def _scatter(head: nn.Linear, test_feats: Tensor, classes: list[int], num_classes: int) -> Tensor:
    with torch.no_grad():
        out = torch.full((len(test_feats), num_classes), -math.inf)  # (N_test, C)
        out[:, classes] = head(test_feats).float().cpu()
    return out


def probe_features(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, classes: list[int],
                   num_classes: int, epochs: int, lr: float, min_lr: float, batch_size: int,
                   generator: torch.Generator | None = None) -> Tensor:
    """The `fast` probe on given features: train (N, F), labels (N,) in `classes`, test (M, F).

    Returns test logits (M, num_classes), unseen columns -inf.
    """
    targets = _remap(train_labels.to(train_feats.device), classes, num_classes)  # (N,)
    head = fit_linear_head(lambda idx: train_feats[idx], targets, train_feats.shape[1], len(classes),
                           epochs, lr, min_lr, batch_size, generator)
    return _scatter(head, test_feats, classes, num_classes)


def _paper_test_images(data: ImageData, idx: Tensor) -> Tensor:
    """The reference's test preprocessing in uint8: resize + centre crop (CIFAR-100, TinyImageNet) or none."""
    x = data.test_x[idx]  # (M, C, S, S)
    if data.name not in _TEST_RESIZE:
        return x
    num, den, mode = _TEST_RESIZE[data.name]
    size = x.shape[-1]
    big = round(size * num / den)
    y = F.interpolate(x.float(), size=(big, big), mode=mode, align_corners=False)
    off = (big - size) // 2
    return y[..., off:off + size, off:off + size].round().clamp(0, 255).to(torch.uint8)


def _paper_probe(backbone: nn.Module, data: ImageData, classes: list[int], cfg: RunConfig,
                 device: torch.device, generator: torch.Generator | None) -> Tensor:
    """REFERENCE.md 11.1: augmented features recomputed every epoch. Returns test logits (M, C)."""
    tr, te = task_indices(data.train_y, classes), task_indices(data.test_y, classes)
    train_x = data.train_x[tr].to(device)  # (N, C, H, W) uint8
    targets = _remap(data.train_y[tr].to(device), classes, data.num_classes)  # (N,)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    mode = "bicubic" if data.name in _BICUBIC_TRAIN else "bilinear"

    def batch_features(idx: Tensor) -> Tensor:
        x = random_resized_crop_flip(train_x[idx].float() / 255.0, mode=mode, generator=generator)
        with torch.no_grad():
            return backbone((x - mean) / std).flatten(1).float()  # (B, F)

    modes = [(m, m.training) for m in backbone.modules()]
    backbone.eval()
    try:
        feat_dim = batch_features(targets.new_zeros(1)).shape[1]
        min_lr = min(PAPER_MIN_LR, cfg.probe_lr)
        head = fit_linear_head(batch_features, targets, feat_dim, len(classes), cfg.probe_epochs,
                               cfg.probe_lr, min_lr, cfg.probe_batch_size, generator)
    finally:
        for m, training in modes:
            m.training = training
    test_feats = extract_features(backbone, _paper_test_images(data, te), data.mean, data.std,
                                  FEATURE_BATCH, device)  # (M, F)
    return _scatter(head, test_feats, classes, data.num_classes)


def linear_probe(backbone: nn.Module, data: ImageData, classes: list[int], cfg: RunConfig,
                 device: torch.device, mode: str | None = None,
                 generator: torch.Generator | None = None) -> ProbeResult:
    """Train a linear probe on the seen `classes` (train and test restricted to them); mode defaults to
    cfg.probe_mode (see the module docstring). `backbone` must already be on `device`."""
    mode = mode or cfg.probe_mode
    start = time.perf_counter()
    te = task_indices(data.test_y, classes)
    if mode == "paper":
        logits = _paper_probe(backbone, data, classes, cfg, device, generator)
    elif mode == "fast":
        feats = seen_features(backbone, data, classes, device)
        logits = _fast_probe(feats, classes, data.num_classes, cfg, generator)
    else:
        raise CromoError(f"unknown probe mode '{mode}'; choose fast or paper")
    return ProbeResult(logits, data.test_y[te], list(classes), mode, time.perf_counter() - start)


@dataclass(frozen=True)
class SeenFeatures:
    """Clean (normalise-only) features of the seen classes: train (N, F), labels (N,), test (M, F), (M,)."""

    train: Tensor
    train_y: Tensor
    test: Tensor
    test_y: Tensor


def seen_features(backbone: nn.Module, data: ImageData, classes: list[int],
                  device: torch.device) -> SeenFeatures:
    """Clean features of the train and test samples of `classes`, on `device`."""
    tr, te = task_indices(data.train_y, classes), task_indices(data.test_y, classes)
    train = extract_features(backbone, data.train_x[tr], data.mean, data.std, FEATURE_BATCH, device)
    test = extract_features(backbone, data.test_x[te], data.mean, data.std, FEATURE_BATCH, device)
    return SeenFeatures(train, data.train_y[tr].to(device), test, data.test_y[te].to(device))


def _fast_probe(feats: SeenFeatures, classes: list[int], num_classes: int, cfg: RunConfig,
                generator: torch.Generator | None) -> Tensor:
    return probe_features(feats.train, feats.train_y, feats.test, classes, num_classes, cfg.probe_epochs,
                          cfg.probe_lr, cfg.probe_lr / 100, cfg.probe_batch_size, generator)


# --- kNN monitor (REFERENCE.md 11.3) -------------------------------------------------------------------


def knn_predict(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, num_classes: int,
                k: int = 200, sigma: float = 0.5, chunk: int = 1024) -> Tensor:
    """Weighted kNN class scores (M, C): sum over the k most cosine-similar bank samples of exp(sim / sigma).

    Both bank (N, F) and queries (M, F) are L2-normalised; the reference leaves the queries unnormalised,
    which keeps the ranking but changes the weights. The test set is processed in chunks of `chunk` rows.
    """
    bank = F.normalize(train_feats.float(), dim=1)  # (N, F)
    labels = train_labels.to(bank.device)  # (N,)
    k = min(k, len(bank))
    out = []
    for q in test_feats.float().split(chunk):
        sim = F.normalize(q.to(bank.device), dim=1) @ bank.T  # (b, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (b, k)
        scores = torch.zeros(len(q), num_classes, device=bank.device)  # (b, C)
        out.append(scores.scatter_add_(1, labels[top_idx], (top_sim / sigma).exp()))
    return torch.cat(out)  # (M, C)


def _knn_accuracy(train: Tensor, train_y: Tensor, test: Tensor, test_y: Tensor, num_classes: int,
                  cfg: RunConfig) -> float:
    scores = knn_predict(train, train_y, test, num_classes, cfg.knn_k, cfg.knn_sigma)  # (M, C)
    return float((scores.argmax(dim=1) == test_y.to(scores.device)).float().mean())


def knn_from_features(feats: SeenFeatures, tasks_seen: list[list[int]], num_classes: int,
                      cfg: RunConfig) -> dict[str, float]:
    """`knn_acc`: seen test samples against the bank of all seen tasks; `knn_acc_task{j}`: task j's test
    samples against task j's own bank."""
    out = {"knn_acc": _knn_accuracy(feats.train, feats.train_y, feats.test, feats.test_y, num_classes, cfg)}
    for j, task in enumerate(tasks_seen):
        cls = torch.tensor(task, device=feats.train_y.device)
        tr, te = torch.isin(feats.train_y, cls), torch.isin(feats.test_y, cls)
        out[f"knn_acc_task{j}"] = _knn_accuracy(feats.train[tr], feats.train_y[tr], feats.test[te],
                                                feats.test_y[te], num_classes, cfg)
    return out


def knn_monitor(backbone: nn.Module, data: ImageData, tasks_seen: list[list[int]], cfg: RunConfig,
                device: torch.device) -> dict[str, float]:
    """The kNN monitor on clean backbone features; see `knn_from_features`."""
    classes = [c for task in tasks_seen for c in task]
    feats = seen_features(backbone, data, classes, device)
    return knn_from_features(feats, tasks_seen, data.num_classes, cfg)


# --- after every task ---------------------------------------------------------------------------------


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class TaskEval:
    """Everything measured after task `task_index`; `per_task` is the row R[task_index][0..task_index]."""

    task_index: int
    final: bool
    probe_mode: str
    classes: list[int]
    per_task: list[float]
    metrics: dict[str, float]  # LA, TP, WP, WP_oracle
    knn: dict[str, float]  # knn_acc, knn_acc_task{j}
    per_class: dict[int, float]
    probe_seconds: float

    def scalars(self) -> dict[str, float]:
        """Flat metrics to log with step = task index."""
        rows = {f"acc_task{j}": a for j, a in enumerate(self.per_task)}
        return {**self.metrics, **self.knn, **rows, "probe_seconds": self.probe_seconds}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: class ids as strings, nan as None."""
        return {
            "task_index": self.task_index, "final": self.final, "probe_mode": self.probe_mode,
            "classes": list(self.classes), "per_task": [_finite(a) for a in self.per_task],
            "metrics": {k: _finite(v) for k, v in self.metrics.items()},
            "knn": {k: _finite(v) for k, v in self.knn.items()},
            "per_class": {str(c): _finite(a) for c, a in self.per_class.items()},
            "probe_seconds": self.probe_seconds,
        }


def accuracy_matrix(evals: Sequence[TaskEval], num_tasks: int | None = None) -> list[list[float | None]]:
    """R as a square list of rows (one per evaluation), undefined entries None."""
    width = num_tasks or max(len(e.per_task) for e in evals)
    return [[_finite(a) for a in e.per_task] + [None] * (width - len(e.per_task)) for e in evals]


def evaluate_after_task(backbone: nn.Module, data: ImageData, tasks: list[list[int]], task_index: int,
                        cfg: RunConfig, device: torch.device,
                        generator: torch.Generator | None = None) -> TaskEval:
    """Probe (cfg.probe_mode) + TP/WP + kNN on the classes of tasks[0..task_index].

    The same call after the last task is the final evaluation (`final` = True). Clean features are shared by
    the fast probe and the kNN monitor.
    """
    seen = tasks[: task_index + 1]
    classes = [c for task in seen for c in task]
    start = time.perf_counter()
    feats = seen_features(backbone, data, classes, device)
    if cfg.probe_mode == "fast":
        logits = _fast_probe(feats, classes, data.num_classes, cfg, generator)
        probe = ProbeResult(logits, feats.test_y.cpu(), classes, "fast", time.perf_counter() - start)
    else:
        probe = linear_probe(backbone, data, classes, cfg, device, cfg.probe_mode, generator)
    return TaskEval(
        task_index=task_index, final=task_index == len(tasks) - 1, probe_mode=probe.mode, classes=classes,
        per_task=per_task_accuracy(probe.logits, probe.targets, seen),
        metrics=task_metrics(probe.logits, probe.targets, seen),
        knn=knn_from_features(feats, seen, data.num_classes, cfg),
        per_class=per_class_accuracy(probe.logits, probe.targets, classes),
        probe_seconds=probe.train_seconds,
    )
