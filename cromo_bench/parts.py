"""The pieces of one run and how they are built: the encoder (backbone + projector), the objective, the
method, the batched augmentation and the replay buffer (`Parts`, `build_parts`), the frozen old model, the
device and the seeds, and the two functions that turn uint8 images into augmented views (`augment_views`,
`make_replay`). `cromo_bench.train` runs them; `cromo_bench.perf` times them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData
from cromo_bench.errors import CromoError
from cromo_bench.method import Method
from cromo_bench.models import Encoder, build_backbone
from cromo_bench.objectives.base import Objective
from cromo_bench.registry import lookup


@dataclass
class Parts:
    """The trainable and frozen pieces of one run."""

    encoder: Encoder
    objective: Objective
    method: Method
    augment: nn.Module
    old_encoder: Encoder | None = None
    buffer: Any = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CromoError("--device cuda was requested but no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise CromoError(f"unknown device '{name}'; choose auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (CPU and CUDA; augmentations draw from it) and return the run's sampling generator."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed + 1)


def build_parts(cfg: RunConfig, data: ImageData, device: torch.device) -> Parts:
    from cromo_bench.augment import TwoViewAugment

    objective_cls = lookup("objective", cfg.ssl)
    method_cls = lookup("method", cfg.method)
    backbone, feat_dim = build_backbone(cfg)
    objective: Objective = objective_cls(cfg, feat_dim)
    encoder = Encoder(backbone, objective.build_projector())
    objective.attach(encoder)
    method: Method = method_cls(cfg, objective)
    augment = TwoViewAugment(cfg.ssl, data.image_size, data.mean, data.std, crop_size=cfg.crop_size or None)
    parts = Parts(encoder.to(device), objective.to(device), method.to(device), augment.to(device))
    if method_cls.needs_buffer and cfg.memory > 0:
        from cromo_bench.buffer import make_buffer

        parts.buffer = make_buffer(cfg, data, device)
    return parts


def trainable_parameters(parts: Parts) -> list[tuple[str, nn.Parameter]]:
    seen: set[int] = set()
    out = []
    for prefix, module in (("encoder", parts.encoder), ("objective", parts.objective), ("method", parts.method)):
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append((f"{prefix}.{name}", p))
    return out


class FrozenEncoder(Encoder):
    """The frozen old model. Its forward runs under inference mode (no autograd bookkeeping; BatchNorm in train
    mode still updates its running statistics, as in the reference) and returns a normal tensor (a clone), so
    losses may save it for backward. Same parameters and state_dict keys as `Encoder`."""

    def forward(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            z = super().forward(x)  # (N, D)
        return z.clone()


def set_memory_format(parts: Parts, memory_format: torch.memory_format) -> None:
    """Lay out every 4-d parameter and buffer of the networks (encoder, old encoder, objective with BYOL's EMA
    target, method) in `memory_format` (channels_last on CUDA)."""
    for module in (parts.encoder, parts.old_encoder, parts.objective, parts.method):
        if module is not None:
            module.to(memory_format=memory_format)  # type: ignore[call-overload]


def freeze_copy(encoder: Encoder, bn_mode: str) -> Encoder:
    """A frozen snapshot of the encoder; BatchNorm in train mode (the reference) or eval mode."""
    old = FrozenEncoder(copy.deepcopy(encoder.backbone), copy.deepcopy(encoder.projector))
    for p in old.parameters():
        p.requires_grad_(False)
    old.train(bn_mode == "train")
    return old


def augment_views(augment: nn.Module, x_uint8: Tensor,
                  memory_format: torch.memory_format = torch.contiguous_format) -> tuple[Tensor, Tensor]:
    """Two float32 views of uint8 images, batched on their device; augmentation never runs under autocast
    (the method may call replay inside the step's autocast region). `memory_format`: the encoder's layout."""
    with torch.autocast(x_uint8.device.type, enabled=False):
        v1, v2 = augment(x_uint8)  # (B, C, S, S) each
    if memory_format != torch.contiguous_format:
        v1, v2 = v1.contiguous(memory_format=memory_format), v2.contiguous(memory_format=memory_format)
    return v1, v2


def make_replay(parts: Parts, generator: torch.Generator,
                memory_format: torch.memory_format = torch.contiguous_format) -> Any:
    buffer, augment = parts.buffer, parts.augment

    def replay(n: int) -> tuple[Tensor, Tensor]:
        images = buffer.sample(n, generator)  # (n, C, H, W) uint8 on the device
        return augment_views(augment, images, memory_format)

    return replay
