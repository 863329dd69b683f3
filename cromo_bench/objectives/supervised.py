"""Supervised reference of the task-confusion study (REFERENCE.md section 12, row "Supervised").

Not an SSL objective: a linear head over all classes on the backbone features, trained with cross-entropy on
both augmented views, L = ½·CE(W·f(x¹), y) + ½·CE(W·f(x²), y). It reads the labels of the current batch
(`Step.y`), so it only makes sense with the `finetune` method on a joint (one-task) benchmark, as the
confusion benchmarks use it: with CIL-minibatches every batch still only holds one virtual task's classes.
The reference trains it with SGD 0.075, batch 128, GroupNorm + weight standardisation, 200 epochs; the
weight decay is not stated there (5e-4 here is a choice).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from cromo_bench.errors import CromoError
from cromo_bench.objectives.base import Objective, full_precision


@full_precision
def supervised_loss(logits_a: Tensor, logits_b: Tensor, y: Tensor) -> Tensor:
    """½·CE(logits_a, y) + ½·CE(logits_b, y); logits (N, C), y (N,) int64 class ids."""
    return 0.5 * F.cross_entropy(logits_a, y) + 0.5 * F.cross_entropy(logits_b, y)


class Supervised(Objective):
    uses_labels: ClassVar[bool] = True
    name: ClassVar[str] = "supervised"
    defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd",
        "lr": 0.075,
        "weight_decay": 5e-4,
        "batch_size": 128,
        "norm": "gn",
        "weight_standardization": True,
        "warmup_epochs": 0,
        "min_lr": 0.0,
        "later_lr_factor": 1.0,
    }

    def build_projector(self) -> nn.Module:
        return nn.Linear(self.feat_dim, sum(self.cfg.task_sizes))  # (N, F) -> (N, C) logits

    def ssl_loss(self, x1: Tensor, x2: Tensor, z1: Tensor, z2: Tensor, y: Tensor | None = None) -> Tensor:
        """Cross-entropy of both views' logits against the batch labels (`Step.y`)."""
        if y is None:
            raise CromoError("objective 'supervised' needs labels; use it with method 'finetune' "
                             "(it is the supervised reference of the task-confusion benchmarks)")
        return supervised_loss(z1, z2, y)

    def pair_loss(self, a: Tensor, b: Tensor) -> Tensor:
        raise CromoError("objective 'supervised' has no pairwise loss; use it with method 'finetune' only")
