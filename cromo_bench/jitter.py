"""Batched colour jitter with torchvision's formulas and torchvision's per-image randomness (REFERENCE.md
section 2.4: `RandomApply([ColorJitter(b, c, s, h)], p)` applied to each image on its own).

For each image, independently: with probability p the jitter is applied; then the four adjustments run in a
random order of their own (torchvision draws `randperm(4)` per image), with factors
brightness, contrast, saturation ~ U[max(0, 1 - x), 1 + x] and hue shift ~ U[-h, h]. The adjustments on a
float image in [0, 1] (torchvision's tensor path):

- brightness f: clamp(f * x, 0, 1)
- contrast f:   clamp(f * x + (1 - f) * mean(gray(x)), 0, 1), the mean over the whole image
- saturation f: clamp(f * x + (1 - f) * gray(x), 0, 1), gray = 0.2989 R + 0.587 G + 0.114 B
- hue f:        RGB -> HSV (hexcone), H <- (H + f) mod 1, HSV -> RGB

All random draws are made on the host (torch's global CPU generator, or the one given), so the grouping of
images by adjustment is known there and the device never has to report back: each of the 4 x 4 (position,
adjustment) groups is gathered, adjusted with per-image factors and scattered back. The work is that of four
adjustments per image, whatever the orders, and no host synchronisation is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

OPS = ("brightness", "contrast", "saturation", "hue")
GRAY = (0.2989, 0.587, 0.114)  # torchvision's luma weights


def gray(x: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma."""
    r, g, b = x.unbind(dim=1)
    return (GRAY[0] * r + GRAY[1] * g + GRAY[2] * b).unsqueeze(1)


def shift_hue(x: Tensor, f: Tensor) -> Tensor:
    """RGB -> HSV, H <- (H + f) mod 1, HSV -> RGB in one pass, for (N, 3, H, W) in [0, 1] and f (N, 1, 1, 1).

    A hue shift keeps V = max and the chroma C = max - min, and V (1 - S w) = V - C w, so only the hue is
    computed (in sextants, 6 H) and S never is; the same values as the two conversions to float rounding."""
    r, g, b = x.unbind(dim=1)  # (N, H, W) each
    v = torch.maximum(torch.maximum(r, g), b)
    chroma = v - torch.minimum(torch.minimum(r, g), b)
    d = torch.where(chroma == 0, torch.ones_like(chroma), chroma)  # grey pixels: any hue, V - 0 w = V
    h6 = torch.where(v == r, (g - b) / d, torch.where(v == g, (b - r) / d + 2.0, (r - g) / d + 4.0))
    h6 = h6 + 6.0 * f[:, 0]  # (N, H, W) shifted hue in sextants, in [-4, 9)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = h6 + n
        k = k - 6.0 * torch.floor(k / 6.0)  # mod 6
        out.append(v - chroma * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=1)


def adjust(op: str, x: Tensor, f: Tensor) -> Tensor:
    """One adjustment of (N, 3, H, W) images in [0, 1] with per-image factors f (N, 1, 1, 1)."""
    if op == "brightness":
        return (f * x).clamp(0.0, 1.0)
    if op == "contrast":
        mean = gray(x).mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
        return (f * x + (1.0 - f) * mean).clamp(0.0, 1.0)
    if op == "saturation":
        return (f * x + (1.0 - f) * gray(x)).clamp(0.0, 1.0)
    if op == "hue":
        return shift_hue(x, f)
    raise ValueError(f"unknown colour adjustment '{op}'; choose one of: {', '.join(OPS)}")


@dataclass(frozen=True)
class JitterParams:
    """One batch's draws, on the host."""

    applied: Tensor  # (N,) bool: the jitter runs on this image
    order: Tensor  # (N, 4) long: order[i, k] is the index in OPS of image i's k-th adjustment
    factors: Tensor  # (N, 4) float32: brightness, contrast, saturation factors and the hue shift


class ColorJitter(nn.Module):
    """`RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)` for each image of a batch."""

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float = 0.8) -> None:
        super().__init__()
        if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5 or not 0 <= p <= 1:
            raise ValueError(f"invalid colour jitter ({brightness}, {contrast}, {saturation}, {hue}), p={p}")
        self.p = p
        self.ranges = [(max(0.0, 1.0 - v), 1.0 + v) for v in (brightness, contrast, saturation)] + [(-hue, hue)]
        self.active = [v > 0 for v in (brightness, contrast, saturation, hue)]  # torchvision skips 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> JitterParams:
        applied = torch.rand(n, generator=generator) < self.p  # (N,)
        order = torch.rand(n, 4, generator=generator).argsort(dim=1)  # (N, 4) uniform random permutations
        lo = torch.tensor([r[0] for r in self.ranges])  # (4,)
        hi = torch.tensor([r[1] for r in self.ranges])  # (4,)
        factors = lo + (hi - lo) * torch.rand(n, 4, generator=generator)  # (N, 4)
        return JitterParams(applied, order, factors)

    def jitter(self, x: Tensor, params: JitterParams) -> Tensor:
        """(N, 3, H, W) float in [0, 1] -> jittered copy, with the host-side `params`: for each position k and
        adjustment j, the rows whose k-th adjustment is j are gathered, adjusted and scattered back."""
        out = x.clone()
        for k in range(4):
            for j, op in enumerate(OPS):
                if not self.active[j]:
                    continue
                rows = torch.nonzero(params.applied & (params.order[:, k] == j)).flatten()  # (n,) host
                if len(rows) == 0:
                    continue
                idx = rows.to(x.device, non_blocking=True)
                f = params.factors[rows, j].to(x.device, dtype=x.dtype, non_blocking=True).view(-1, 1, 1, 1)
                out.index_copy_(0, idx, adjust(op, out.index_select(0, idx), f))
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.jitter(x, self.sample(len(x)))
