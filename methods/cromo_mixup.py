"""CroMo-Mixup (REFERENCE.md sections 5, 6 and 8): cross-task data mixup plus cross-model feature mixup,
with optional CaSSLe distillation (section 7).

Task 0 is plain SSL ({"ssl"}). On every later task, per step:
1. Draw m = min(B, replay_bs) buffer images as two augmented views b1, b2 (the reference draws replay_bs and
   pairs current sample i with buffer sample i < m; drawing m directly has the same distribution).
2. Draw one lambda per step: `lambda_mode="fixed"` -> `mix_lambda`; `"beta"` -> Beta(mix_alpha, mix_alpha),
   drawn from the run's generator (the reference: 0.7 for Barlow Twins, Beta(1, 1) = U(0, 1) for the others).
3. Mix each view in pixel space: mx_v = lambda * x_v[:m] + (1 - lambda) * b_v.
4. Z_v = F([x_v; mx_v]) (B + m rows, BatchNorm shared by clean and mixed samples);
   O_v = F_old([x_v; b_v]) under no gradient (the old model's BN mode is cfg.old_model_bn).
5. Terms:
   ssl    = objective.ssl_loss(x1, x2, Z1[:B], Z2[:B])                      (mixed samples are not in it)
   cromo  = 1/2 sum_v [ lambda * S(query(Z_v[B:]), C_v) + (1 - lambda) * S(query(Z_v[B:]), O_v[B:]) ]
            with C_v = objective.target(x_v[:m], Z_v[:m]) (z itself, or BYOL's EMA projection), detached when
            cfg.detach_current_target (the reference does not detach), and S = objective.cromo_pair_loss.
   distill = CaSSLe's distillation on the first B rows: g(Z_v[:B]) towards O_v[:B], weight cfg.distill_weight;
            dropped when the weight is 0 (`cromo_nodistill`, or `--set distill_weight=0`).
The method composes a CaSSLe instance for g and the distillation term.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from baselines.cassle import CaSSLe
from baselines.er import require_ssl_objective
from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError
from cromo_bench.method import Method, Step, old_forward
from cromo_bench.objectives.base import Objective


def draw_lambda(cfg: RunConfig, generator: torch.Generator) -> float:
    """One mixup coefficient: fixed `mix_lambda`, or Beta(mix_alpha, mix_alpha) from `generator`."""
    if cfg.lambda_mode == "fixed":
        return float(cfg.mix_lambda)
    if cfg.lambda_mode == "beta":
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # one draw of the run's generator
        return float(np.random.default_rng(seed).beta(cfg.mix_alpha, cfg.mix_alpha))
    raise CromoError(f"lambda_mode '{cfg.lambda_mode}' is not allowed; choose one of: fixed, beta")


def mix(x: Tensor, b: Tensor, lam: float) -> Tensor:
    """Pixel mixup of the first len(b) current views with buffer views: (m, C, H, W)."""
    return lam * x[: len(b)] + (1.0 - lam) * b


def cromo_term(objective: Objective, lam: float, views: list[tuple[Tensor, Tensor, Tensor]], batch: int,
               detach_current: bool) -> Tensor:
    """The CroMo loss (REFERENCE.md section 6). Each view is (x_v (B, ...), Z_v (B+m, D), O_v (B+m, D)):
    current-model outputs on [x_v; mx_v] and old-model outputs on [x_v; b_v]; `batch` is B."""
    total = torch.zeros((), device=views[0][1].device, dtype=views[0][1].dtype)
    for x_v, z_v, o_v in views:
        m = len(z_v) - batch
        query = objective.query(z_v[batch:])  # (m, D) mixed samples, online branch
        current = objective.target(x_v[:m], z_v[:m])  # (m, D) current-model embedding of the current source
        if detach_current:
            current = current.detach()
        old = o_v[batch:].detach()  # (m, D) old-model embedding of the buffer source
        total = total + lam * objective.cromo_pair_loss(query, current) \
            + (1.0 - lam) * objective.cromo_pair_loss(query, old)
    return 0.5 * total


class CromoMixup(Method):
    name: ClassVar[str] = "cromo"
    needs_old_model: ClassVar[bool] = True
    needs_buffer: ClassVar[bool] = True

    def __init__(self, cfg: RunConfig, objective: Objective) -> None:
        super().__init__(cfg, objective)
        require_ssl_objective(self.name, objective)
        if cfg.memory <= 0 or cfg.replay_bs <= 0:
            raise CromoError(f"{self.name} needs a replay buffer: set memory > 0 and replay_bs > 0 "
                             f"(got memory={cfg.memory}, replay_bs={cfg.replay_bs})")
        if cfg.lambda_mode == "beta" and cfg.mix_alpha <= 0:
            raise CromoError(f"mix_alpha must be positive for lambda_mode=beta, got {cfg.mix_alpha}")
        self.cassle = CaSSLe(cfg, objective)  # owns g and the distillation term

    def loss_terms(self, step: Step) -> dict[str, Tensor]:
        if step.old_encoder is None or step.replay is None:  # task 0: plain SSL
            z1, z2 = step.encoder(step.x1), step.encoder(step.x2)  # (B, D) each
            return {"ssl": step.objective.ssl_loss(step.x1, step.x2, z1, z2)}
        x1, x2, batch = step.x1, step.x2, len(step.x1)
        m = min(batch, self.cfg.replay_bs)
        b1, b2 = step.replay(m)  # (m, C, H, W) each
        lam = draw_lambda(self.cfg, step.generator)
        z1 = step.encoder(torch.cat([x1, mix(x1, b1, lam)]))  # (B + m, D)
        z2 = step.encoder(torch.cat([x2, mix(x2, b2, lam)]))  # (B + m, D)
        o1 = old_forward(step, torch.cat([x1, b1]))  # (B + m, D)
        o2 = old_forward(step, torch.cat([x2, b2]))  # (B + m, D)
        objective = step.objective
        terms = {
            "ssl": objective.ssl_loss(x1, x2, z1[:batch], z2[:batch]),
            "cromo": cromo_term(objective, lam, [(x1, z1, o1), (x2, z2, o2)], batch,
                                self.cfg.detach_current_target),
        }
        if self.cassle.active:
            terms["distill"] = self.cassle.distill(objective, z1[:batch], z2[:batch], o1[:batch], o2[:batch])
        return terms


class CromoNoDistill(CromoMixup):
    """CroMo-Mixup without distillation (the reference's `--lambdap 0`); only name and defaults differ."""

    name: ClassVar[str] = "cromo_nodistill"
    defaults: ClassVar[dict[str, Any]] = {"distill_weight": 0.0}
