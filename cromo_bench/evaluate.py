"""Evaluation protocol: linear probe, kNN monitor, evaluation after every task (REFERENCE.md section 11).

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
- kNN monitor (11.3): weighted kNN, K = cfg.knn_k, weights exp(cos / cfg.knn_sigma), global and per task
  (knn.py, on the features of features.py).
- After every task, a TaskEval holds LA / TP / WP, the row R[i][0..i] of the accuracy matrix (accuracy on
  task j after task i) and the kNN accuracies. The metrics themselves (LA / TP / WP, average accuracy,
  forgetting, backward transfer) are in metrics.py.
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
from cromo_bench.data import ImageData, task_indices
from cromo_bench.errors import CromoError
from cromo_bench.features import FEATURE_BATCH, SeenFeatures, extract_features, seen_features
from cromo_bench.knn import knn_from_features
from cromo_bench.metrics import per_class_accuracy, per_task_accuracy, task_metrics

PAPER_MIN_LR = 0.002  # REFERENCE.md 11.1: cosine annealing to 0.002
# test preprocessing of the reference's loaders: (resize numerator, crop denominator, interpolation)
_TEST_RESIZE = {"cifar100": (36, 32, "bicubic"), "tinyimagenet": (73, 64, "bilinear")}
_BICUBIC_TRAIN = ("cifar100", "tinyimagenet")  # RandomResizedCrop interpolation (bilinear otherwise)


# --- features and the linear probe (REFERENCE.md 11.1) --------------------------------------------------


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


def _fast_probe(feats: SeenFeatures, classes: list[int], num_classes: int, cfg: RunConfig,
                generator: torch.Generator | None) -> Tensor:
    return probe_features(feats.train, feats.train_y, feats.test, classes, num_classes, cfg.probe_epochs,
                          cfg.probe_lr, cfg.probe_lr / 100, cfg.probe_batch_size, generator)


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
