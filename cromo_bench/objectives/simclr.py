"""SimCLR / NT-Xent (REFERENCE.md section 3.3).

Over the stacked, L2-normalised set s = [A; B] of 2N embeddings, with positives i⁺ = i ± N:

    L_NCE(A, B) = −(1/2N)·Σ_i log[ exp(s_i·s_{i⁺}/τ) / Σ_{k≠i} exp(s_i·s_k/τ) ]

The same loss serves distillation (½·NCE(g(z¹), o¹) + ½·NCE(g(z²), o²)) and the CroMo term (NCE over
[mixed; target]), both through the base class's `pair_loss` plumbing.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cromo_bench.objectives.base import Objective, full_precision


@full_precision
def nt_xent_loss(z_a: Tensor, z_b: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent on (N, D) embeddings: 2N anchors, the diagonal dropped, mean cross-entropy."""
    n = z_a.shape[0]
    s = F.normalize(torch.cat([z_a, z_b], dim=0), dim=1)  # (2N, D)
    logits = s @ s.T / temperature  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=s.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # drop k = i from the denominator
    idx = torch.arange(n, device=s.device)
    positives = torch.cat([idx + n, idx])  # (2N,)
    return F.cross_entropy(logits, positives)


class SimCLR(Objective):
    name: ClassVar[str] = "simclr"
    defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "lars",
        "lr": 1.2,  # 0.6 * 512 / 256
        "weight_decay": 5e-4,
        "batch_size": 512,
        "proj_hidden": 2048,
        "proj_out": 128,
        "distill_hidden": 2048,
        "warmup_epochs": 0,
        "min_lr": 0.0,
        "later_lr_factor": 0.1,
        "norm": "bn",
        "weight_standardization": False,
        "temperature": 0.5,
        "lambda_mode": "beta",
        "mix_alpha": 1.0,
        "replay_bs": 64,
    }

    def build_projector(self) -> nn.Module:
        h, o = self.cfg.proj_hidden, self.cfg.proj_out
        return nn.Sequential(nn.Linear(self.feat_dim, h), nn.ReLU(inplace=True), nn.Linear(h, o, bias=False))

    def pair_loss(self, a: Tensor, b: Tensor) -> Tensor:
        return nt_xent_loss(a, b, self.cfg.temperature)
