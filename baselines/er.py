"""ER, experience replay (REFERENCE.md section 9, `ering_*`): the SSL loss over [current B; replayed R].

Each step draws `cfg.replay_bs` buffer images (two augmented views each), concatenates them with the current
views and computes one SSL loss over the B + R pairs, so BatchNorm and the loss's batch statistics (Barlow's
cross-correlation, SimCLR's negatives) pool current and old samples. It composes Finetune by calling it on the
concatenated views. Term: {"ssl"} on every task (task 0 has no buffer and is plain finetuning).
With memory = 0 (no buffer) ER reduces to finetune.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from baselines.finetune import Finetune
from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError
from cromo_bench.method import Method, Step
from cromo_bench.objectives.base import Objective


def require_ssl_objective(method: str, objective: Objective) -> None:
    """Continual SSL methods need a label-free objective (the `supervised` reference is finetune-only)."""
    if objective.uses_labels:  # the supervised reference objective
        raise CromoError(f"method '{method}' needs an SSL objective; objective '{objective.name}' uses "
                         "labels and runs with method 'finetune' only")


def with_replay(step: Step, n: int) -> Step:
    """`step` with `n` replayed pairs appended: x_v -> [x_v (B); b_v (n)]. Unchanged without a buffer."""
    if step.replay is None or n <= 0:
        return step
    b1, b2 = step.replay(n)  # (n, C, H, W) each
    return dataclasses.replace(step, x1=torch.cat([step.x1, b1]), x2=torch.cat([step.x2, b2]), y=None)


class ER(Method):
    name: ClassVar[str] = "er"
    needs_buffer: ClassVar[bool] = True

    def __init__(self, cfg: RunConfig, objective: Objective) -> None:
        super().__init__(cfg, objective)
        require_ssl_objective(self.name, objective)
        self.finetune = Finetune(cfg, objective)

    def loss_terms(self, step: Step) -> dict[str, Tensor]:
        return self.finetune.loss_terms(with_replay(step, self.cfg.replay_bs))
