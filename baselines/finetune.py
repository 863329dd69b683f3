"""Finetune: the SSL objective on the current task's data only (REFERENCE.md section 9)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from cromo_bench.method import Method, Step


class Finetune(Method):
    name: ClassVar[str] = "finetune"

    def loss_terms(self, step: Step) -> dict[str, Tensor]:
        z1, z2 = step.encoder(step.x1), step.encoder(step.x2)  # (B, D) each
        return {"ssl": step.objective.ssl_loss(step.x1, step.x2, z1, z2, step.y)}
