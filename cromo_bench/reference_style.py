"""The reference code's data path, rebuilt for `cromo-bench perf`'s reference-style pipeline (REFERENCE.md
sections 2.4 and 4): per-image torchvision transforms on float images in [0, 1] (a PIL round trip for BYOL), a
dataset whose items are (x, T(x), T'(x), y), DataLoader-style per-sample batches, and the one-at-a-time replay
loop. Nothing here runs in training; it is the baseline the training step is timed against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from cromo_bench.augment import ViewSpec

View = Callable[[Tensor], Tensor]


def reference_view(spec: ViewSpec, size: int, mean: Sequence[float], std: Sequence[float], pil: bool) -> View:
    """The reference's per-image torchvision pipeline for one view (REFERENCE.md section 2.4), on a float
    (C, H, W) image in [0, 1]; with `pil` (BYOL) a tensor -> PIL -> tensor round trip for solarisation."""
    from torchvision import transforms as T

    ops: list[Any] = [T.RandomResizedCrop(size, scale=spec.scale, antialias=True), T.RandomHorizontalFlip(),
                      T.RandomApply([T.ColorJitter(*spec.jitter)], p=0.8), T.RandomGrayscale(p=0.2)]
    if spec.blur_p > 0:
        ops.append(T.RandomApply([T.GaussianBlur(3, sigma=spec.blur_sigma)], p=spec.blur_p))
    if pil:
        ops += [T.ToPILImage(), T.RandomSolarize(128, p=spec.solarize_p), T.ToTensor()]
    elif spec.solarize_p > 0:
        ops.append(T.RandomSolarize(spec.solarize_threshold, p=spec.solarize_p))
    ops.append(T.Normalize(mean, std))
    compose = T.Compose(ops)
    if not pil:
        return compose  # type: ignore[no-any-return]

    def via_pil(img: Tensor) -> Tensor:  # (C, H, W), or (1, C, H, W) as the replay loop passes it
        out = compose(img.cpu()[0] if img.ndim == 4 else img.cpu())
        return (out.unsqueeze(0) if img.ndim == 4 else out).to(img.device)

    return via_pil


class ReferenceDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Float images in [0, 1] (the reference stores these); each item is (x, T(x), T'(x), y), the raw image
    included, as the reference's dataset for its CroMo trainers returns it."""

    def __init__(self, images: Tensor, labels: Tensor, views: tuple[View, View]) -> None:
        self.images, self.labels, self.views = images, labels, views

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = self.images[i]  # (C, H, W)
        return x, self.views[0](x), self.views[1](x), self.labels[i]


@contextmanager
def single_thread() -> Iterator[None]:
    """Per-image transforms run on one intra-op thread, as in DataLoader workers: the fastest setting for
    tiny images, and immune to the stalls of a parallel region on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def per_sample(images: Tensor, views: tuple[View, View]) -> tuple[Tensor, Tensor]:
    """What DataLoader workers do for a batch: each (C, H, W) image through T and T', then stacked."""
    b1, b2 = [], []
    with single_thread():
        for img in images:
            b1.append(views[0](img))
            b2.append(views[1](img))
    return torch.stack(b1), torch.stack(b2)


def one_at_a_time(images: Tensor, views: tuple[View, View]) -> tuple[Tensor, Tensor]:
    """The reference's replay augmentation (REFERENCE.md section 4): in a Python loop, each (1, C, H, W) image
    through T and T', appended to the views so far with torch.cat."""
    b1, b2 = images[:0], images[:0]
    with single_thread():
        for i in range(len(images)):
            img = images[i : i + 1]  # (1, C, H, W)
            b1 = torch.cat((b1, views[0](img)))
            b2 = torch.cat((b2, views[1](img)))
    return b1, b2
