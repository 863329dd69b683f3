"""BYOL (REFERENCE.md section 3.4).

Online p = q(f(x)) with predictor q; target ξ(x) = f_EMA(x) without gradient; ℓ(p, t) = 2 − 2·cos(p, t):

    L_BYOL = mean_n [ ½·ℓ(p¹_n, ξ(x²_n)) + ½·ℓ(p²_n, ξ(x¹_n)) ]

After every optimizer step: θ_ξ ← τ_k·θ_ξ + (1−τ_k)·θ, then k ← k+1, with
τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2 (τ goes from τ_base to 1; k is clamped to K).
`ema_schedule="global"`: K = total steps of the whole task sequence and k never restarts (the CroMo
reference); `"task"`: K = steps of the current task and k restarts at every task (the CaSSLe-BYOL baseline).
BatchNorm running statistics of the online encoder are copied into the target (not averaged).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError
from cromo_bench.objectives.base import Objective, full_precision


def neg_cos_loss(p: Tensor, t: Tensor) -> Tensor:
    """Per-sample ℓ = 2 − 2·cos(p, t) of (N, D) inputs; shape (N,)."""
    return 2.0 - 2.0 * F.cosine_similarity(p, t, dim=1)


@full_precision
def byol_loss(p_a: Tensor, p_b: Tensor, t_a: Tensor, t_b: Tensor) -> Tensor:
    """mean_n ½·ℓ(p_a, t_b) + ½·ℓ(p_b, t_a): predictions of each view against the other view's target."""
    return (0.5 * neg_cos_loss(p_a, t_b) + 0.5 * neg_cos_loss(p_b, t_a)).mean()


def ema_tau(step: int, total: int, base: float) -> float:
    """τ_k = 1 − (1 − base)·(cos(πk/K) + 1)/2, with k clamped to [0, K]."""
    if total <= 0:
        return base
    k = min(max(step, 0), total)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / total) + 1.0) / 2.0


class BYOL(Objective):
    name: ClassVar[str] = "byol"
    defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "lars",
        "lr": 1.0,  # 1.0 * 256 / 256
        "weight_decay": 1e-5,
        "batch_size": 256,
        "proj_hidden": 4096,
        "proj_out": 256,
        "pred_hidden": 4096,
        "distill_hidden": 4096,
        "warmup_epochs": 10,
        "min_lr": 1e-3,
        "later_lr_factor": 0.1,
        "norm": "gn",
        "weight_standardization": True,
        "ema_base": 0.99,
        "ema_schedule": "global",
        "lambda_mode": "beta",
        "mix_alpha": 1.0,
        "replay_bs": 128,
    }

    def __init__(self, cfg: RunConfig, feat_dim: int) -> None:
        super().__init__(cfg, feat_dim)
        if cfg.ema_schedule not in ("global", "task"):
            raise CromoError(f"ema_schedule must be 'global' or 'task', got '{cfg.ema_schedule}'")
        o, h = cfg.proj_out, cfg.pred_hidden
        self.predictor = nn.Sequential(
            nn.Linear(o, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Linear(h, o))
        self.ema: nn.Module | None = None  # the EMA target encoder, built by `attach`
        self.ema_step = 0  # k
        self.ema_total = 0  # K

    def build_projector(self) -> nn.Module:
        h, o = self.cfg.proj_hidden, self.cfg.proj_out
        return nn.Sequential(
            nn.Linear(self.feat_dim, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Linear(h, o))

    def attach(self, encoder: nn.Module) -> None:
        """The target is a frozen deep copy of the online encoder (backbone + projector), buffers included."""
        self.ema = copy.deepcopy(encoder)
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @property
    def tau(self) -> float:
        """The coefficient the next EMA update uses."""
        return ema_tau(self.ema_step, self.ema_total, self.cfg.ema_base)

    # --- roles -----------------------------------------------------------------------------------
    def query(self, z: Tensor) -> Tensor:
        return self.predictor(z)  # (B, D)

    def target(self, x: Tensor, z: Tensor) -> Tensor:
        if self.ema is None:
            raise RuntimeError("BYOL.attach(encoder) must be called before the target is used")
        with torch.inference_mode():  # no autograd bookkeeping; a normal tensor out, so losses may save it
            t = self.ema(x)  # (B, D)
        return t.clone()

    # --- losses ----------------------------------------------------------------------------------
    def pair_loss(self, a: Tensor, b: Tensor) -> Tensor:
        return neg_cos_loss(a, b).mean()

    def ssl_loss(self, x1: Tensor, x2: Tensor, z1: Tensor, z2: Tensor, y: Tensor | None = None) -> Tensor:
        return byol_loss(self.query(z1), self.query(z2), self.target(x1, z1), self.target(x2, z2))

    # --- lifecycle -------------------------------------------------------------------------------
    def start_task(self, task: int, steps_in_task: int, total_steps: int) -> None:
        if self.cfg.ema_schedule == "task":
            self.ema_step, self.ema_total = 0, steps_in_task
        else:
            self.ema_total = total_steps

    @torch.no_grad()
    def after_step(self, encoder: nn.Module) -> None:
        if self.ema is None:
            raise RuntimeError("BYOL.attach(encoder) must be called before after_step")
        tau = self.tau
        target_p: list[Tensor] = list(self.ema.parameters())
        online_p: list[Tensor] = [p.detach() for p in encoder.parameters()]
        if len(target_p) != len(online_p):
            raise RuntimeError("the EMA target and the online encoder have different parameters")
        torch._foreach_lerp_(target_p, online_p, 1.0 - tau)  # θ_ξ + (1−τ)(θ − θ_ξ) = τθ_ξ + (1−τ)θ
        for bt, bo in zip(self.ema.buffers(), encoder.buffers(), strict=True):
            bt.copy_(bo)
        self.ema_step += 1

    def extra_state(self) -> dict[str, Any]:
        return {"ema_step": self.ema_step, "ema_total": self.ema_total}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ema_step = int(state.get("ema_step", 0))
        self.ema_total = int(state.get("ema_total", 0))
