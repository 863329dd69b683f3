"""The method contract (ARCHITECTURE.md, "Method" and "Step").

A method is an `nn.Module` (it may own trainable parts such as CaSSLe's temporal projector g) that declares
what it needs and returns named loss terms for one step. The trainer sums the terms, backpropagates and logs
each term by name. Methods compose other methods by calling them, never by subclassing them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from cromo_bench.config import RunConfig
from cromo_bench.objectives.base import Objective


@dataclass(frozen=True)
class Step:
    """Everything one training step may use. Views are augmented and normalised, on the training device."""

    x1: Tensor  # (B, C, H, W) view 1 of the current batch
    x2: Tensor  # (B, C, H, W) view 2
    task: int  # 0-based task index
    encoder: nn.Module  # current backbone + projector, trainable
    objective: Objective
    old_encoder: nn.Module | None  # frozen copy from the end of the previous task; None on task 0
    replay: Callable[[int], tuple[Tensor, Tensor]] | None  # n -> two augmented views of n buffer images
    generator: torch.Generator  # the run's CPU generator, for per-step random draws (mixup lambda)
    y: Tensor | None = None  # (B,) labels of the current batch; only supervised references may read them


class Method(nn.Module):
    name: ClassVar[str] = ""
    needs_old_model: ClassVar[bool] = False
    needs_buffer: ClassVar[bool] = False
    objective: Objective

    def __init__(self, cfg: RunConfig, objective: Objective) -> None:
        super().__init__()
        self.cfg = cfg
        # Held, not registered as a submodule: the trainer owns, moves and checkpoints the objective once.
        object.__setattr__(self, "objective", objective)

    def loss_terms(self, step: Step) -> dict[str, Tensor]:
        raise NotImplementedError


def old_forward(step: Step, x: Tensor) -> Tensor:
    """The frozen old encoder's projector output for `x`, with no gradient (REFERENCE.md section 6)."""
    assert step.old_encoder is not None
    with torch.no_grad():
        return step.old_encoder(x)
