"""CaSSLe (PEERS.md section 1; REFERENCE.md sections 2.2, 7 and 9): SSL on the current task plus distillation
of the current projector output, mapped through a trainable temporal projector g, towards the frozen old
model's projector output of the same view, using the objective's own loss:

    L_KD = distill_weight * objective.distill_loss(g(z1), g(z2), f_old(x1), f_old(x2))

(for Barlow, SimCLR and BYOL `distill_loss` is 1/2 S(g(z1), o1) + 1/2 S(g(z2), o2); CorInfoMax has its
own asymmetric form, REFERENCE.md section 7). g = Lin(o -> distill_hidden, no bias) - BN1d - ReLU - Lin(-> o),
with o = cfg.proj_out. It exists from task 0 (so the optimizer holds it) and gets gradients from task 1 on.

Terms: {"ssl"} on task 0; {"ssl", "distill"} later. With distill_weight = 0 the "distill" term is dropped (and
g is not run). The reference CorInfoMax trainers ignore the distillation weight (always 1); here the weight
applies to every objective, and the `reference` preset pins it to 1 for CorInfoMax (cromo_bench/presets.py).
`distill` is reused by CaSSLe+ and CroMo-Mixup on embeddings they have already computed.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from baselines.er import require_ssl_objective
from cromo_bench.config import RunConfig
from cromo_bench.method import Method, Step, old_forward
from cromo_bench.objectives.base import Objective


def temporal_projector(dim: int, hidden: int) -> nn.Sequential:
    """g: Lin(dim -> hidden, no bias) - BN1d(hidden) - ReLU - Lin(hidden -> dim) (REFERENCE.md 2.2)."""
    return nn.Sequential(
        nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, dim),
    )


class CaSSLe(Method):
    name: ClassVar[str] = "cassle"
    needs_old_model: ClassVar[bool] = True

    def __init__(self, cfg: RunConfig, objective: Objective) -> None:
        super().__init__(cfg, objective)
        require_ssl_objective(self.name, objective)
        self.g = temporal_projector(cfg.proj_out, cfg.distill_hidden)

    @property
    def active(self) -> bool:
        """Whether the distillation term exists (a weight of 0 drops it)."""
        return self.cfg.distill_weight != 0

    def distill(self, objective: Objective, z1: Tensor, z2: Tensor, o1: Tensor, o2: Tensor) -> Tensor:
        """distill_weight * L_KD of the current z_v (N, D) towards the old o_v (N, D) (no grad to o)."""
        p1, p2 = self.g(z1), self.g(z2)  # (N, D) each
        return self.cfg.distill_weight * objective.distill_loss(p1, p2, o1.detach(), o2.detach())

    def loss_terms(self, step: Step) -> dict[str, Tensor]:
        z1, z2 = step.encoder(step.x1), step.encoder(step.x2)  # (B, D) each
        terms = {"ssl": step.objective.ssl_loss(step.x1, step.x2, z1, z2)}
        if step.old_encoder is not None and self.active:
            o1, o2 = old_forward(step, step.x1), old_forward(step, step.x2)  # (B, D) each
            terms["distill"] = self.distill(step.objective, z1, z2, o1, o2)
        return terms
