"""Batched two-view SSL augmentations on the training device (REFERENCE.md section 2.4, pipelines T and T').

Every sample of a batch gets its own random parameters (kornia, `same_on_batch=False`, and the project's own
colour jitter, cromo_bench.jitter); all draws come from torch's global CPU RNG, also when the images are on a
GPU (the samplers stay on the host and their draws reach the device without a blocking copy), so seeding
torch reproduces the views and the parameters drawn do not depend on the device. Per objective (CIFAR values
of the reference):

| | crop scale | ColorJitter (b, c, s, h), p=0.8 | blur 3x3, sigma~U[0.1, 2] (T / T') | solarize (T / T') |
|---|---|---|---|---|
| corinfomax | (0.08, 1) | (0.4, 0.4, 0.2, 0.1) | 1.0 / 0.1 | - |
| barlow | (0.08, 1) | (0.4, 0.4, 0.2, 0.1) | - | 0 / 0.2, threshold 0.51 |
| simclr | (0.2, 1) | (0.4, 0.4, 0.4, 0.1) | - | - |
| byol | (0.08, 1) | (0.4, 0.4, 0.2, 0.1) | - (p=0 in the reference) | 0 / 0.2, threshold 128/255 |

Any other objective (e.g. `supervised`) gets `DEFAULT_PIPELINE`: the same T for both views, crop scale
(0.08, 1), ColorJitter (0.4, 0.4, 0.2, 0.1), no blur, no solarize.

All pipelines: RandomResizedCrop -> horizontal flip p=0.5 -> ColorJitter p=0.8 -> grayscale p=0.2 -> blur ->
solarize -> Normalize(dataset mean, std).

Documented differences from the reference's per-image torchvision transforms:
- Crops are taken by one batched bilinear warp (kornia's `cropping_mode="resample"`, no host sync), not by
  slicing and resizing each image; without antialiasing (crops are mostly upscaled, where it is a no-op).
- The colour jitter is cromo_bench.jitter.ColorJitter, not kornia's: torchvision's formulas and torchvision's
  per-image random order of the four adjustments (kornia draws one order per call), and faster on small images.
- T and T' differ only after grayscale (blur, solarize) for every objective, so the shared steps run once on
  the two copies [x; x] with independent draws per row (the same distribution as two calls, half the calls).
- BYOL solarizes through PIL in the reference (threshold 128 on uint8); here the threshold is 128/255 on the
  [0, 1] scale, which inverts the same pixel levels of an unjittered image.
- The reference hard-codes BYOL's crop to 32x32 even for 64x64 TinyImageNet (section 14.7). The default here
  crops to the input size for every objective; `--set crop_size=32` reproduces the quirk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from cromo_bench.errors import CromoError
from cromo_bench.jitter import ColorJitter

SOLARIZE_TENSOR = 0.51  # the reference's threshold on the [0, 1] scale (Barlow Twins)
SOLARIZE_PIL = 128.0 / 255.0  # PIL's solarize(threshold=128) on uint8 (BYOL)


@dataclass(frozen=True)
class ViewSpec:
    """One pipeline (T or T') of one objective."""

    scale: tuple[float, float]
    jitter: tuple[float, float, float, float]  # brightness, contrast, saturation, hue
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = SOLARIZE_TENSOR

    def shared_part(self) -> tuple[tuple[float, float], tuple[float, float, float, float]]:
        """What comes before the view-specific blur and solarize: crop scale and jitter."""
        return self.scale, self.jitter


_STD_JITTER = (0.4, 0.4, 0.2, 0.1)

#: (T, T') per objective, REFERENCE.md section 2.4.
PIPELINES: dict[str, tuple[ViewSpec, ViewSpec]] = {
    "corinfomax": (
        ViewSpec((0.08, 1.0), _STD_JITTER, blur_p=1.0),
        ViewSpec((0.08, 1.0), _STD_JITTER, blur_p=0.1),
    ),
    "barlow": (
        ViewSpec((0.08, 1.0), _STD_JITTER),
        ViewSpec((0.08, 1.0), _STD_JITTER, solarize_p=0.2),
    ),
    "simclr": (
        ViewSpec((0.2, 1.0), (0.4, 0.4, 0.4, 0.1)),
        ViewSpec((0.2, 1.0), (0.4, 0.4, 0.4, 0.1)),
    ),
    "byol": (
        ViewSpec((0.08, 1.0), _STD_JITTER, blur_sigma=(1.0, 2.0)),
        ViewSpec((0.08, 1.0), _STD_JITTER, blur_sigma=(1.0, 2.0), solarize_p=0.2,
                 solarize_threshold=SOLARIZE_PIL),
    ),
}

_DEFAULT_VIEW = ViewSpec((0.08, 1.0), _STD_JITTER)
DEFAULT_PIPELINE: tuple[ViewSpec, ViewSpec] = (_DEFAULT_VIEW, _DEFAULT_VIEW)


class ViewPipeline(nn.Module):
    """One view's transform on float images in [0, 1]: `geometric` (crop, flip) then `photometric`."""

    def __init__(self, spec: ViewSpec, crop_size: int) -> None:
        super().__init__()
        self.geometric = nn.Sequential(
            K.RandomResizedCrop((crop_size, crop_size), scale=spec.scale, ratio=(3 / 4, 4 / 3),
                                same_on_batch=False, p=1.0, cropping_mode="resample"),
            K.RandomHorizontalFlip(p=0.5, same_on_batch=False),
        )
        b, c, s, h = spec.jitter
        photometric: list[nn.Module] = [
            ColorJitter(b, c, s, h, p=0.8),
            K.RandomGrayscale(p=0.2, same_on_batch=False),
        ]
        if spec.blur_p > 0:
            photometric.append(
                K.RandomGaussianBlur((3, 3), spec.blur_sigma, same_on_batch=False, p=spec.blur_p))
        if spec.solarize_p > 0:
            t = spec.solarize_threshold
            photometric.append(K.RandomSolarize(thresholds=(t, t), additions=(0.0, 0.0), same_on_batch=False,
                                                p=spec.solarize_p))
        self.photometric = nn.Sequential(*photometric)

    def _apply(self, fn: Any, recurse: bool = True) -> ViewPipeline:
        """Moving the module keeps kornia's samplers on the CPU (kornia's default): the per-sample parameters
        are drawn on the host and reach the device without blocking, so a CUDA step never waits for the GPU
        to draw them. The draws (torch's CPU generator) are the same on every device."""
        out = super()._apply(fn, recurse)
        for m in self.modules():
            if m is not self and hasattr(m, "set_rng_device_and_dtype"):
                m.set_rng_device_and_dtype(torch.device("cpu"), torch.get_default_dtype())  # type: ignore[operator]
        return out  # type: ignore[return-value]

    def shared(self, x: Tensor) -> Tensor:
        """Crop, flip, jitter, grayscale: (B, C, H, W) -> (B, C, S, S) in [0, 1]."""
        return self.photometric[1](self.photometric[0](self.geometric(x)))

    def tail(self, x: Tensor) -> Tensor:
        """The view-specific blur and solarize, if any."""
        for m in list(self.photometric)[2:]:
            x = m(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(self.shared(x))  # (B, C, S, S) in [0, 1]


class TwoViewAugment(nn.Module):
    """uint8 (B, C, H, W) on any device -> two float32 normalised views (T(x), T'(x)) of shape (B, C, S, S).

    S is `crop_size`, by default the input's size `image_size`. Grayscale inputs (C = 1) are not supported by
    the colour steps; the datasets of the project are all 3-channel.
    """

    mean: Tensor  # (1, C, 1, 1) buffer
    std: Tensor  # (1, C, 1, 1) buffer

    def __init__(self, ssl: str, image_size: int, mean: Sequence[float], std: Sequence[float],
                 *, crop_size: int | None = None) -> None:
        super().__init__()
        self.ssl = ssl
        self.image_size = image_size
        self.crop_size = crop_size or image_size
        spec1, spec2 = PIPELINES.get(ssl, DEFAULT_PIPELINE)
        self.view1 = ViewPipeline(spec1, self.crop_size)
        self.view2 = ViewPipeline(spec2, self.crop_size)
        self.fused = spec1.shared_part() == spec2.shared_part()  # the shared steps run once on [x; x]
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    @torch.no_grad()
    def forward(self, x_uint8: Tensor) -> tuple[Tensor, Tensor]:
        if x_uint8.dtype != torch.uint8:
            raise CromoError(f"TwoViewAugment expects uint8 images, got {x_uint8.dtype}")
        x = x_uint8.float().div_(255.0)  # (B, C, H, W) in [0, 1]
        mean = self.mean.to(x.device)  # (1, C, 1, 1)
        std = self.std.to(x.device)  # (1, C, 1, 1)
        if self.fused:
            both = self.view1.shared(torch.cat([x, x]))  # (2B, C, S, S), every row its own draws
            v1, v2 = self.view1.tail(both[: len(x)]), self.view2.tail(both[len(x):])
        else:
            v1, v2 = self.view1(x), self.view2(x)
        v1 = (v1 - mean) / std  # (B, C, S, S)
        v2 = (v2 - mean) / std  # (B, C, S, S)
        return v1.float(), v2.float()
