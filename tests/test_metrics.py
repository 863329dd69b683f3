"""Tests of the metrics (REFERENCE.md section 11.2, PEERS.md section 5) against hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from cromo_bench.metrics import continual_summary, per_class_accuracy, per_task_accuracy, task_metrics

NEG = -math.inf


# --- LA / TP / WP -------------------------------------------------------------------------------------

# tasks {0, 1} and {2, 3}; column 4 is an unseen class whose logit is the largest everywhere
TASKS = [[0, 1], [2, 3]]
LOGITS = torch.tensor([
    [5.0, 1.0, 0.0, 0.0, 9.0],  # y=0: pred 0  -> correct, task ok; oracle 0 correct
    [5.0, 1.0, 0.0, 0.0, 9.0],  # y=1: pred 0  -> wrong, task ok;   oracle 0 wrong
    [0.0, 5.0, 3.0, 1.0, 9.0],  # y=2: pred 1  -> task wrong;       oracle 2 correct
    [0.0, 0.0, 1.0, 5.0, 9.0],  # y=3: pred 3  -> correct;          oracle 3 correct
    [0.0, 0.0, 1.0, 5.0, 9.0],  # y=2: pred 3  -> wrong, task ok;   oracle 3 wrong
    [5.0, 0.0, 1.0, 2.0, 9.0],  # y=3: pred 0  -> task wrong;       oracle 3 correct
])
TARGETS = torch.tensor([0, 1, 2, 3, 2, 3])


def test_task_metrics_match_hand_computation():
    m = task_metrics(LOGITS, TARGETS, TASKS)
    assert m["LA"] == pytest.approx(2 / 6)
    assert m["TP"] == pytest.approx(4 / 6)
    assert m["WP"] == pytest.approx(2 / 4)  # conditional: correct among task-correct
    assert m["WP_oracle"] == pytest.approx(4 / 6)  # restricted argmax: differs from WP here
    assert m["LA"] == pytest.approx(m["TP"] * m["WP"])


def test_task_metrics_unseen_columns_masked_or_excluded_agree():
    masked = LOGITS.clone()
    masked[:, 4] = NEG
    assert task_metrics(masked, TARGETS, TASKS) == task_metrics(LOGITS, TARGETS, TASKS)
    # naming column 4 as a task makes it win every argmax: nothing is correct
    with_unseen = task_metrics(LOGITS, TARGETS, [*TASKS, [4]])
    assert with_unseen["LA"] == 0.0 and with_unseen["TP"] == 0.0 and with_unseen["WP"] == 0.0
    assert with_unseen["WP_oracle"] == pytest.approx(4 / 6)


def test_task_metrics_identity_on_random_logits():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(500, 10, generator=g), torch.randint(0, 10, (500,), generator=g)
    tasks = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    m = task_metrics(logits, targets, tasks)
    assert m["LA"] == pytest.approx(m["TP"] * m["WP"], abs=1e-12)
    assert m["LA"] == pytest.approx(float((logits.argmax(1) == targets).float().mean()))
    with pytest.raises(ValueError):
        task_metrics(logits, targets, tasks[:2])  # targets outside the given tasks


def test_per_task_and_per_class_accuracy():
    assert per_task_accuracy(LOGITS, TARGETS, TASKS) == pytest.approx([1 / 2, 1 / 4])
    expected = {0: 1.0, 1: 0.0, 2: 0.0, 3: 0.5}
    assert per_class_accuracy(LOGITS, TARGETS, [0, 1, 2, 3]) == pytest.approx(expected)


# --- accuracy matrix ----------------------------------------------------------------------------------

R = [[0.9], [0.95, 0.8], [0.6, 0.5, 0.85]]


def test_continual_summary_matches_hand_computation():
    s = continual_summary(R)
    assert s["avg_acc"] == pytest.approx((0.6 + 0.5 + 0.85) / 3)
    assert s["forgetting"] == pytest.approx(((0.95 - 0.6) + (0.8 - 0.5)) / 2)  # max uses R[1][0] = 0.95
    assert s["bwt"] == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)
    padded: list[list[float | None]] = [[0.9, None, None], [0.95, 0.8, None], [0.6, 0.5, 0.85]]
    assert continual_summary(padded) == s
    assert continual_summary([[0.7]]) == {"avg_acc": 0.7, "forgetting": 0.0, "bwt": 0.0}
    # the maximum of task 0 lies two rows before the last: max, not the previous row
    assert continual_summary([[0.95], [0.9, 0.8], [0.6, 0.5, 0.85]])["forgetting"] == pytest.approx(
        ((0.95 - 0.6) + (0.8 - 0.5)) / 2)
    with pytest.raises(ValueError):
        continual_summary([[0.9], [None, 0.8]])
