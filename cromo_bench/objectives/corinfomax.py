"""CorInfoMax (REFERENCE.md section 3.1; PEERS.md section 4).

With ẑ = z/‖z‖₂ row-wise and running moments kept per branch b (float64, previous values detached):

    μ_b ← λ_μ·μ_b^prev + (1−λ_μ)·mean_n ẑ_bn
    R_b ← λ_R·R_b^prev + (1−λ_R)·(1/N)·Σ_n (ẑ_bn − μ_b)(ẑ_bn − μ_b)ᵀ      (with the NEW μ_b)
    L   = α·MSE(ẑ_a, ẑ_b) − (1/D)·[logdet(R_a + εI) + logdet(R_b + εI)]

R starts at I and μ at 0; the state is reset at every task (a new loss object per task in the reference).

Continual terms (REFERENCE.md sections 6, 7, 14.2):
- Distillation: α·MSE(n(g(z²)), n(o²)) + CovLoss(n(g(z¹)), n(o¹)) with its own running-covariance state;
  the old features o carry no gradient. It ignores `distill_weight` in the reference (the method decides).
- CroMo term, `cromo_loss="bt"` (reference): Barlow Twins on L2-normalised mixed queries and targets.
  `cromo_loss="native"` (default): a stateless CorInfoMax loss, α·MSE(n(a), n(b)) plus the log-det term
  of moments computed from a fresh state (μ = (1−λ_μ)·mean, R = λ_R·I + (1−λ_R)·cov). The fresh state keeps
  R well conditioned (eigenvalues ≥ λ_R) even when the batch (m ≤ D samples) is rank deficient.
  Both variants L2-normalise both arguments themselves, so methods may pass raw projector outputs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError
from cromo_bench.objectives.barlow import barlow_twins_loss
from cromo_bench.objectives.base import Objective, full_precision

Moments = tuple[Tensor, Tensor]  # (μ (D,), R (D, D)), float64


def l2n(z: Tensor) -> Tensor:
    """Row-wise unit L2 norm."""
    return F.normalize(z, dim=1)


def update_moments(z: Tensor, prev: Moments, la_R: float, la_mu: float) -> Moments:
    """One running-moment update on normalised embeddings z (N, D); `prev` is detached here."""
    mu_prev, r_prev = prev[0].detach(), prev[1].detach()
    zd = z.to(torch.float64)  # (N, D)
    mu = la_mu * mu_prev + (1.0 - la_mu) * zd.mean(0)  # (D,)
    zc = zd - mu  # (N, D), centred with the new mean
    r = la_R * r_prev + (1.0 - la_R) * (zc.T @ zc) / zd.shape[0]  # (D, D)
    return mu, r


def fresh_moments(dim: int, device: torch.device | None = None) -> Moments:
    """The initial state: μ = 0, R = I (float64)."""
    return (torch.zeros(dim, dtype=torch.float64, device=device),
            torch.eye(dim, dtype=torch.float64, device=device))


def logdet_eps(r: Tensor, eps: float) -> Tensor:
    """log det(R + εI) of a symmetric positive-definite (D, D) matrix."""
    eye = torch.eye(r.shape[0], dtype=r.dtype, device=r.device)
    return torch.linalg.slogdet(r + eps * eye).logabsdet


def covariance_term(r_a: Tensor, r_b: Tensor, eps: float) -> Tensor:
    """−(1/D)·[logdet(R_a + εI) + logdet(R_b + εI)]."""
    return -(logdet_eps(r_a, eps) + logdet_eps(r_b, eps)) / r_a.shape[0]


@full_precision
def corinfomax_loss(
    z_a: Tensor, z_b: Tensor, state_a: Moments, state_b: Moments, alpha: float = 250.0,
    la_R: float = 0.01, la_mu: float = 0.01, eps: float = 1e-8,
) -> tuple[Tensor, Moments, Moments]:
    """The pure loss on given state: returns (loss, new state a, new state b); new states carry the graph."""
    za, zb = l2n(z_a), l2n(z_b)  # (N, D) each
    new_a = update_moments(za, state_a, la_R, la_mu)
    new_b = update_moments(zb, state_b, la_R, la_mu)
    loss = alpha * F.mse_loss(za, zb) + covariance_term(new_a[1], new_b[1], eps)
    return loss.to(z_a.dtype), new_a, new_b


def corinfomax_pair_loss(a: Tensor, b: Tensor, alpha: float = 250.0, la_R: float = 0.01, la_mu: float = 0.01,
                         eps: float = 1e-8) -> Tensor:
    """Stateless CorInfoMax loss: `corinfomax_loss` evaluated from a fresh state (μ = 0, R = I)."""
    fresh = fresh_moments(a.shape[1], a.device)
    return corinfomax_loss(a, b, fresh, fresh, alpha, la_R, la_mu, eps)[0]


class CorInfoMaxLoss(nn.Module):
    """CorInfoMax loss with running moments of both branches as float64 buffers; `reset()` starts a task."""

    mu_a: Tensor
    R_a: Tensor
    mu_b: Tensor
    R_b: Tensor

    def __init__(self, dim: int, alpha: float = 250.0, la_R: float = 0.01, la_mu: float = 0.01,
                 eps: float = 1e-8) -> None:
        super().__init__()
        self.dim, self.alpha, self.la_R, self.la_mu, self.eps = dim, alpha, la_R, la_mu, eps
        mu, r = fresh_moments(dim)
        self.register_buffer("mu_a", mu.clone())
        self.register_buffer("R_a", r.clone())
        self.register_buffer("mu_b", mu.clone())
        self.register_buffer("R_b", r.clone())

    @torch.no_grad()
    def reset(self) -> None:
        for mu, r in ((self.mu_a, self.R_a), (self.mu_b, self.R_b)):
            mu.zero_()
            r.copy_(torch.eye(self.dim, dtype=r.dtype, device=r.device))

    def _store(self, new_a: Moments, new_b: Moments) -> None:
        self.mu_a, self.R_a = new_a[0].detach(), new_a[1].detach()
        self.mu_b, self.R_b = new_b[0].detach(), new_b[1].detach()

    def _state(self, device: torch.device) -> tuple[Moments, Moments]:
        if self.R_a.device != device:
            self.to(device)
        return (self.mu_a, self.R_a), (self.mu_b, self.R_b)

    def covariance_loss(self, za: Tensor, zb: Tensor) -> Tensor:
        """Update the moments with already-normalised (N, D) batches; return only the log-det term."""
        state_a, state_b = self._state(za.device)
        new_a = update_moments(za, state_a, self.la_R, self.la_mu)
        new_b = update_moments(zb, state_b, self.la_R, self.la_mu)
        self._store(new_a, new_b)
        return covariance_term(new_a[1], new_b[1], self.eps).to(za.dtype)

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        state_a, state_b = self._state(z_a.device)
        loss, new_a, new_b = corinfomax_loss(z_a, z_b, state_a, state_b, self.alpha, self.la_R, self.la_mu,
                                             self.eps)
        self._store(new_a, new_b)
        return loss


class CorInfoMax(Objective):
    name: ClassVar[str] = "corinfomax"
    defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd",
        "lr": 0.1,
        "weight_decay": 1e-4,
        "batch_size": 256,
        "proj_hidden": 2048,
        "proj_out": 64,
        "distill_hidden": 2048,
        "warmup_epochs": 0,
        "min_lr": 0.0,
        "later_lr_factor": 1.0,
        "norm": "bn",
        "weight_standardization": False,
        "cim_alpha": 250.0,
        "cim_la_r": 0.01,
        "cim_la_mu": 0.01,
        "cim_eps": 1e-8,
        "lambda_mode": "beta",
        "mix_alpha": 1.0,
        "replay_bs": 64,
    }

    def __init__(self, cfg: RunConfig, feat_dim: int) -> None:
        super().__init__(cfg, feat_dim)
        if cfg.cromo_loss not in ("native", "bt"):
            raise CromoError(f"cromo_loss must be 'native' or 'bt', got '{cfg.cromo_loss}'")
        args = (cfg.proj_out, cfg.cim_alpha, cfg.cim_la_r, cfg.cim_la_mu, cfg.cim_eps)
        self.loss_state = CorInfoMaxLoss(*args)  # the SSL term's running moments
        self.kd_state = CorInfoMaxLoss(*args)  # the distillation term's own moments (REFERENCE.md section 7)

    def build_projector(self) -> nn.Module:
        h, o = self.cfg.proj_hidden, self.cfg.proj_out
        return nn.Sequential(
            nn.Linear(self.feat_dim, h), nn.ReLU(inplace=True),
            nn.Linear(h, h), nn.ReLU(inplace=True),
            nn.Linear(h, o, bias=False),
        )

    def ssl_loss(self, x1: Tensor, x2: Tensor, z1: Tensor, z2: Tensor, y: Tensor | None = None) -> Tensor:
        return self.loss_state(z1, z2)

    def pair_loss(self, a: Tensor, b: Tensor) -> Tensor:
        c = self.cfg
        return corinfomax_pair_loss(a, b, c.cim_alpha, c.cim_la_r, c.cim_la_mu, c.cim_eps)

    def distill_loss(self, p1: Tensor, p2: Tensor, o1: Tensor, o2: Tensor) -> Tensor:
        """α·MSE(n(p²), n(o²)) + CovLoss(n(p¹), n(o¹)); view 2 for invariance, view 1 for the log-det."""
        inv = self.cfg.cim_alpha * F.mse_loss(l2n(p2), l2n(o2.detach()))
        return inv + self.kd_state.covariance_loss(l2n(p1), l2n(o1.detach()))

    def cromo_pair_loss(self, mixed: Tensor, target: Tensor) -> Tensor:
        if self.cfg.cromo_loss == "bt":
            return barlow_twins_loss(l2n(mixed), l2n(target), self.cfg.bt_lambda, self.cfg.bt_scale)
        return self.pair_loss(mixed, target)

    def start_task(self, task: int, steps_in_task: int, total_steps: int) -> None:
        self.loss_state.reset()
        self.kd_state.reset()
