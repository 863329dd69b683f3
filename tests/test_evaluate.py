"""Tests of the evaluation protocol (REFERENCE.md section 11) against hand computation and brute force."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData, load_digits, normalize
from cromo_bench.evaluate import (
    accuracy_matrix,
    evaluate_after_task,
    linear_probe,
    probe_features,
    random_resized_crop_flip,
)
from cromo_bench.features import SeenFeatures, extract_features
from cromo_bench.knn import knn_from_features, knn_predict
from cromo_bench.metrics import continual_summary, task_metrics

CPU = torch.device("cpu")


# --- linear probe on hand-made features ---------------------------------------------------------------


def _gaussians(means: torch.Tensor, n: int, std: float, labels: list[int], seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([m + std * torch.randn(n, means.shape[1], generator=g) for m in means])  # (K n, D)
    y = torch.tensor(labels).repeat_interleave(n)  # (K n,)
    return x, y


def test_fast_probe_separable_clusters_on_a_class_subset():
    classes = [1, 3, 4]
    means = 4.0 * torch.eye(8)[:3]  # (3, 8)
    xtr, ytr = _gaussians(means, 60, 0.3, classes, seed=1)
    xte, yte = _gaussians(means, 60, 0.3, classes, seed=2)
    logits = probe_features(xtr, ytr, xte, classes, 6, epochs=20, lr=0.2, min_lr=0.002, batch_size=32,
                            generator=torch.Generator().manual_seed(0))
    assert logits.shape == (180, 6)
    assert torch.isneginf(logits[:, [0, 2, 5]]).all() and torch.isfinite(logits[:, classes]).all()
    assert (logits.argmax(1) == yte).float().mean() >= 0.99


def test_fast_probe_non_separable_reaches_bayes_accuracy():
    means = torch.tensor([[-1.0], [1.0]])  # unit-variance 1-D Gaussians: Bayes accuracy Phi(1) = 0.8413
    xtr, ytr = _gaussians(means, 1000, 1.0, [0, 1], seed=3)
    xte, yte = _gaussians(means, 1000, 1.0, [0, 1], seed=4)
    g = torch.Generator().manual_seed(0)
    acc = (probe_features(xtr, ytr, xte, [0, 1], 2, 20, 0.2, 0.002, 256, g).argmax(1) == yte).float().mean()
    assert abs(float(acc) - 0.8413) < 0.03
    same = torch.zeros(2, 1)  # identical classes: chance
    xtr, ytr = _gaussians(same, 1000, 1.0, [0, 1], seed=5)
    xte, yte = _gaussians(same, 1000, 1.0, [0, 1], seed=6)
    acc = (probe_features(xtr, ytr, xte, [0, 1], 2, 20, 0.2, 0.002, 256, g).argmax(1) == yte).float().mean()
    assert abs(float(acc) - 0.5) < 0.05


# --- kNN ----------------------------------------------------------------------------------------------


def test_knn_predict_matches_brute_force_double_loop():
    g = torch.Generator().manual_seed(0)
    bank, labels, queries = torch.randn(30, 5, generator=g), torch.randint(0, 4, (30,), generator=g), \
        torch.randn(7, 5, generator=g)
    k, sigma = 6, 0.5
    expected = torch.zeros(7, 4)
    for i in range(7):
        sims = []
        for n in range(30):
            sims.append((float(queries[i] @ bank[n] / (queries[i].norm() * bank[n].norm())), int(labels[n])))
        for s, c in sorted(sims, reverse=True)[:k]:
            expected[i, c] += math.exp(s / sigma)
    got = knn_predict(bank, labels, queries, 4, k=k, sigma=sigma, chunk=3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # k larger than the bank: every bank sample votes
    full = knn_predict(bank, labels, queries, 4, k=200, sigma=sigma)
    cos = F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T  # (7, 30)
    torch.testing.assert_close(full, (cos / sigma).exp() @ F.one_hot(labels, 4).float())


def test_knn_global_confuses_tasks_that_task_wise_separates():
    # class 0 (task 0) and class 2 (task 1) share a cluster; so do 1 and 3
    centre = {0: 0, 1: 1, 2: 0, 3: 1}
    g = torch.Generator().manual_seed(0)

    def sample(n: int):
        y = torch.arange(4).repeat_interleave(n)  # (4 n,)
        x = 5.0 * torch.eye(3)[[centre[int(c)] for c in y]] + 0.1 * torch.randn(4 * n, 3, generator=g)
        return x, y

    (xtr, ytr), (xte, yte) = sample(20), sample(10)
    cfg = RunConfig(knn_k=5, knn_sigma=0.5)
    out = knn_from_features(SeenFeatures(xtr, ytr, xte, yte), [[0, 1], [2, 3]], 4, cfg)
    assert set(out) == {"knn_acc", "knn_acc_task0", "knn_acc_task1"}
    assert out["knn_acc_task0"] == 1.0 and out["knn_acc_task1"] == 1.0
    assert 0.2 < out["knn_acc"] < 0.8  # chance between the two classes of each cluster


# --- features, augmentation, probe modes --------------------------------------------------------------


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(F.relu(self.bn(self.conv(x))), 2).flatten(1)  # (B, 32)


def _digits(per_class: int = 20) -> ImageData:
    return load_digits(16).subset_per_class(per_class)


def test_extract_features_batched_eval_and_restores_modes():
    torch.manual_seed(0)
    net, data = TinyNet(), _digits()
    net.train()
    net.bn.eval()  # mixed modes must come back as they were
    feats = extract_features(net, data.train_x, data.mean, data.std, batch_size=16, device=CPU)
    assert net.training and not net.bn.training and net.conv.training
    assert feats.shape == (len(data.train_x), 32) and not feats.requires_grad and not feats.is_inference()
    net.eval()
    with torch.no_grad():
        direct = net(normalize(data.train_x, data.mean, data.std))
    torch.testing.assert_close(feats, direct, rtol=1e-5, atol=1e-5)


def test_random_resized_crop_flip():
    x = torch.rand(8, 3, 16, 16)
    same = random_resized_crop_flip(x, scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                    generator=torch.Generator().manual_seed(0))
    kept = [bool(torch.allclose(same[i], x[i], atol=1e-5)) for i in range(8)]
    flipped = [bool(torch.allclose(same[i], x[i].flip(-1), atol=1e-5)) for i in range(8)]
    assert all(a != b for a, b in zip(kept, flipped, strict=True)) and any(kept) and any(flipped)
    ramp = torch.arange(256.0).view(1, 1, 16, 16).repeat(4, 1, 1, 1)  # value = 16 row + col
    a = random_resized_crop_flip(ramp, generator=torch.Generator().manual_seed(1))
    b = random_resized_crop_flip(ramp, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)  # reproducible from the generator
    assert len({tuple(v.flatten()[:5].tolist()) for v in a}) == 4  # per-sample parameters
    assert a.min() >= 0 and a.max() <= 255  # crops lie inside the image


def test_linear_probe_modes_shapes_reproducible_and_restore_mode():
    torch.manual_seed(0)
    net, data = TinyNet().train(), _digits(10)
    cfg = RunConfig(probe_epochs=2, probe_batch_size=32)
    classes = [2, 3, 7]
    for mode in ("fast", "paper"):
        runs = [linear_probe(net, data, classes, cfg, CPU, mode, torch.Generator().manual_seed(0))
                for _ in range(2)]
        res = runs[0]
        assert net.training and res.mode == mode
        assert res.logits.shape == (int(torch.isin(data.test_y, torch.tensor(classes)).sum()), 10)
        assert torch.isneginf(res.logits[:, [0, 1, 4, 5, 6, 8, 9]]).all()
        assert set(res.targets.tolist()) == set(classes)
        torch.testing.assert_close(res.logits, runs[1].logits)


def test_evaluate_after_task_structure_and_json():
    torch.manual_seed(0)
    net, data = TinyNet(), _digits(15)
    cfg = RunConfig(probe_epochs=5, probe_batch_size=64, knn_k=10)
    tasks = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    ev = evaluate_after_task(net, data, tasks, 0, cfg, CPU, torch.Generator().manual_seed(0))
    assert not ev.final and ev.classes == [0, 1, 2, 3, 4] and len(ev.per_task) == 1
    assert ev.per_task[0] == pytest.approx(ev.metrics["LA"])  # one task: its accuracy is LA
    assert ev.metrics["TP"] == 1.0  # one seen task: every prediction lands in it
    assert set(ev.knn) == {"knn_acc", "knn_acc_task0"} and set(ev.per_class) == set(range(5))
    last = evaluate_after_task(net, data, tasks, 1, cfg, CPU, torch.Generator().manual_seed(0))
    assert last.final and len(last.per_task) == 2
    assert last.metrics["LA"] == pytest.approx(last.metrics["TP"] * last.metrics["WP"])
    assert last.metrics["LA"] == pytest.approx(sum(last.per_class.values()) / 10, abs=0.02)  # ~balanced test
    assert {"LA", "TP", "WP", "WP_oracle", "knn_acc", "knn_acc_task1", "acc_task1"} <= set(last.scalars())
    text = json.dumps([e.to_dict() for e in (ev, last)], allow_nan=False)
    assert json.loads(text)[1]["per_class"]["9"] == pytest.approx(last.per_class[9])
    matrix = accuracy_matrix([ev, last])
    assert matrix == [[ev.per_task[0], None], last.per_task]
    assert continual_summary(matrix)["avg_acc"] == pytest.approx(sum(last.per_task) / 2)


@pytest.mark.slow
def test_paper_and_fast_probe_agree_on_digits():
    """A ResNet-18 (width 8) briefly trained with supervision; both probe modes within a few points."""
    from cromo_bench.models import build_backbone

    torch.manual_seed(0)
    cfg = RunConfig(width=8, image_size=16, probe_epochs=30, probe_batch_size=256)
    data = load_digits(16)
    net, feat_dim = build_backbone(cfg)
    head = nn.Linear(feat_dim, 10)
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        for idx in torch.randperm(len(data.train_y), generator=g).split(64):
            x = normalize(data.train_x[idx], data.mean, data.std)  # (B, 3, 16, 16)
            loss = F.cross_entropy(head(net(x)), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    tasks = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    la = {}
    for mode in ("fast", "paper"):
        res = linear_probe(net, data, list(range(10)), cfg, CPU, mode, torch.Generator().manual_seed(0))
        la[mode] = task_metrics(res.logits, res.targets, tasks)["LA"]
    assert la["fast"] > 0.85 and la["paper"] > 0.8
    assert abs(la["paper"] - la["fast"]) < 0.08, la
