"""Backbone features for evaluation: the frozen backbone in eval mode under inference mode, on normalised
uint8 images, batched; and the clean features of the seen classes' train and test samples, held on the device
(the fast linear probe and the kNN monitor share them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cromo_bench.data import ImageData, normalize, task_indices

FEATURE_BATCH = 512  # batch size of feature extraction (inference only)


def extract_features(backbone: nn.Module, images_uint8: Tensor, mean: Sequence[float], std: Sequence[float],
                     batch_size: int, device: torch.device) -> Tensor:
    """Backbone features (N, F) on `device` of normalised uint8 images (N, C, H, W), in eval mode.

    Every submodule's train/eval flag is restored afterwards.
    """
    modes = [(m, m.training) for m in backbone.modules()]
    backbone.eval()
    chunks = []
    try:
        with torch.inference_mode():
            for x in images_uint8.split(batch_size):
                x = normalize(x.to(device, non_blocking=True), tuple(mean), tuple(std))  # (B, C, H, W)
                chunks.append(backbone(x).flatten(1).float())  # (B, F)
    finally:
        for m, training in modes:
            m.training = training
    if not chunks:
        raise ValueError("no images to extract features from")
    return torch.cat(chunks)  # (N, F); cat outside inference mode gives a normal tensor


@dataclass(frozen=True)
class SeenFeatures:
    """Clean (normalise-only) features of the seen classes: train (N, F), labels (N,), test (M, F), (M,)."""

    train: Tensor
    train_y: Tensor
    test: Tensor
    test_y: Tensor


def seen_features(backbone: nn.Module, data: ImageData, classes: list[int],
                  device: torch.device) -> SeenFeatures:
    """Clean features of the train and test samples of `classes`, on `device`."""
    tr, te = task_indices(data.train_y, classes), task_indices(data.test_y, classes)
    train = extract_features(backbone, data.train_x[tr], data.mean, data.std, FEATURE_BATCH, device)
    test = extract_features(backbone, data.test_x[te], data.mean, data.std, FEATURE_BATCH, device)
    return SeenFeatures(train, data.train_y[tr].to(device), test, data.test_y[te].to(device))
