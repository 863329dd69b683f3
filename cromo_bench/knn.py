"""The kNN monitor (REFERENCE.md 11.3): weighted kNN on clean backbone features, K = cfg.knn_k, weights
exp(cos / cfg.knn_sigma), over all seen tasks and per task, by batched matrix products on the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData
from cromo_bench.features import SeenFeatures, seen_features


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
