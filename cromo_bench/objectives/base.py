"""The objective contract (ARCHITECTURE.md, "Objective").

An objective owns what it needs besides the backbone (its projector shape, BYOL's predictor and EMA target,
CorInfoMax's running covariance) and computes losses on projector outputs. The pure math lives in plain
functions next to each subclass so tests can call it on fixed tensors.

Vocabulary used by methods (REFERENCE.md sections 5-8):
- `z`: projector output of the current encoder, with gradient; shape (B, D).
- `query(z)`: what the online branch compares (BYOL: the predictor output; otherwise z itself).
- `target(x, z)`: the current-model target for view `x` (BYOL: the EMA encoder's output under no-grad;
  otherwise z itself).
- `pair_loss(a, b)`: the objective's own loss between two batches of embeddings, a stateless function
  (BT, NT-Xent, 2-2cos); used for distillation and the CroMo term.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from cromo_bench.config import RunConfig

LossFn = TypeVar("LossFn", bound=Callable[..., Any])


def full_precision(loss: LossFn) -> LossFn:
    """Run a loss function outside autocast, with bf16/fp16 tensor arguments cast to float32 (float64 stays):
    under CUDA's bf16 autocast the networks run in bf16, while cross-correlations, similarity logits and
    their reductions keep float32 accuracy."""

    @functools.wraps(loss)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        args = tuple(a.float() if isinstance(a, Tensor) and a.dtype in (torch.bfloat16, torch.float16) else a
                     for a in args)
        with torch.autocast(device, enabled=False):
            return loss(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


class Objective(nn.Module):
    name: ClassVar[str] = ""
    #: True only for the supervised reference, which reads the batch labels and runs with finetune alone.
    uses_labels: ClassVar[bool] = False
    #: RunConfig values of REFERENCE.md section 10 (CIFAR); benchmark specs refine them per dataset.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: RunConfig, feat_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.feat_dim = feat_dim

    # --- structure -------------------------------------------------------------------------------
    def build_projector(self) -> nn.Module:
        """The projector placed after the backbone; the Encoder owns it (so the old model copies it)."""
        raise NotImplementedError

    def attach(self, encoder: nn.Module) -> None:
        """Called once the encoder exists (BYOL builds its EMA target here)."""

    # --- roles -----------------------------------------------------------------------------------
    def query(self, z: Tensor) -> Tensor:
        return z

    def target(self, x: Tensor, z: Tensor) -> Tensor:
        return z

    # --- losses ----------------------------------------------------------------------------------
    def pair_loss(self, a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def ssl_loss(self, x1: Tensor, x2: Tensor, z1: Tensor, z2: Tensor, y: Tensor | None = None) -> Tensor:
        """The SSL loss of two views: x1, x2 (B, C, H, W) inputs; z1, z2 (B, D) projector outputs; y (B,) the
        batch labels, which only a supervised reference may read."""
        return self.pair_loss(self.query(z1), self.target(x2, z2))

    def distill_loss(self, p1: Tensor, p2: Tensor, o1: Tensor, o2: Tensor) -> Tensor:
        """CaSSLe distillation: p_v = g(z_v) of the current model, o_v the frozen old model's z_v."""
        return 0.5 * self.pair_loss(p1, o1) + 0.5 * self.pair_loss(p2, o2)

    def cromo_pair_loss(self, mixed: Tensor, target: Tensor) -> Tensor:
        """The loss S of the CroMo term between mixed-view queries and a target (REFERENCE.md section 6)."""
        return self.pair_loss(mixed, target)

    # --- lifecycle -------------------------------------------------------------------------------
    def start_task(self, task: int, steps_in_task: int, total_steps: int) -> None:
        """Called before each task's first step (CorInfoMax resets its state here)."""

    @torch.no_grad()
    def after_step(self, encoder: nn.Module) -> None:
        """Called after every optimizer step (BYOL updates its EMA target here)."""

    def extra_state(self) -> dict[str, Any]:
        """Non-parameter state to checkpoint (counters); tensors live in buffers/state_dict."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` returned."""
