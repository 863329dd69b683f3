"""Batched two-view augmentations (REFERENCE.md section 2.4): per-sample randomness, shapes, ranges, seeds."""

from __future__ import annotations

import kornia.augmentation as K
import pytest
import torch

from cromo_bench.augment import TwoViewAugment, ViewPipeline
from cromo_bench.errors import CromoError
from cromo_bench.jitter import ColorJitter

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
SSLS = ["barlow", "corinfomax", "simclr", "byol"]


def identical_batch(n: int = 32, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (1, 3, size, size), generator=g, dtype=torch.uint8)
    return img.repeat(n, 1, 1, 1)  # (n, 3, size, size), all equal


def distinct(x: torch.Tensor) -> int:
    return len({tuple(row.tolist()) for row in x.flatten(1).mul(1e4).round()})


@pytest.mark.parametrize("ssl", SSLS)
def test_identical_images_get_different_crops_and_colours(ssl: str) -> None:
    aug = TwoViewAugment(ssl, 16, MEAN, STD)
    x = identical_batch().float() / 255.0
    torch.manual_seed(1)
    for view in (aug.view1, aug.view2):
        assert distinct(view.geometric(x)) >= 30  # crops differ per sample
        jitter = view.photometric[0]
        assert isinstance(jitter, ColorJitter)
        colours = jitter(x)
        changed = ~torch.isclose(colours, x).flatten(1).all(1)  # (32,) jittered samples (p = 0.8)
        assert 16 <= changed.sum() < 32
        assert distinct(colours[changed]) == int(changed.sum())  # each with its own colour change
        assert distinct(view.photometric(x)) >= 16  # jitter, grayscale, blur and solarize together


@pytest.mark.parametrize("ssl", SSLS)
def test_shape_dtype_range_and_views_differ(ssl: str) -> None:
    aug = TwoViewAugment(ssl, 16, MEAN, STD)
    torch.manual_seed(0)
    v1, v2 = aug(identical_batch())
    for v in (v1, v2):
        assert v.shape == (32, 3, 16, 16) and v.dtype == torch.float32
        for c in range(3):
            lo, hi = (0 - MEAN[c]) / STD[c], (1 - MEAN[c]) / STD[c]
            assert v[:, c].min() >= lo - 1e-5 and v[:, c].max() <= hi + 1e-5
        assert v.std() > 0.1
    assert not torch.allclose(v1, v2)
    assert (v1 - v2).flatten(1).abs().amax(1).min() > 0  # every sample's two views differ


@pytest.mark.parametrize("ssl", SSLS)
def test_fused_views_are_the_two_pipelines(ssl: str) -> None:
    """T and T' share crop, flip, jitter and grayscale, so those run once on [x; x]; each half then gets its
    own view's blur and solarize. With the same draws, that equals running the two pipelines one after the
    other."""
    aug = TwoViewAugment(ssl, 16, MEAN, STD)
    assert aug.fused
    x = identical_batch(8)
    torch.manual_seed(5)
    v1, v2 = aug(x)
    xf = torch.cat([x, x]).float() / 255.0
    torch.manual_seed(5)
    shared = aug.view1.shared(xf)  # the same draws as the fused call
    m = (torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1))
    torch.testing.assert_close(v1, (aug.view1.tail(shared[:8]) - m[0]) / m[1])
    torch.testing.assert_close(v2, (aug.view2.tail(shared[8:]) - m[0]) / m[1])
    assert distinct(torch.cat([v1, v2])) == 16  # every row its own draws


def test_same_seed_same_views() -> None:
    aug = TwoViewAugment("corinfomax", 16, MEAN, STD)
    x = identical_batch(8)
    torch.manual_seed(123)
    a1, a2 = aug(x)
    torch.manual_seed(123)
    b1, b2 = aug(x)
    torch.manual_seed(124)
    c1, _ = aug(x)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, c1)


def test_pipelines_follow_the_reference_table() -> None:
    def kinds(view: ViewPipeline) -> dict[type, float]:
        return {type(m): float(m.p) for m in view.photometric}  # type: ignore[arg-type]

    cim = TwoViewAugment("corinfomax", 16, MEAN, STD)
    assert kinds(cim.view1)[K.RandomGaussianBlur] == 1.0 and kinds(cim.view2)[K.RandomGaussianBlur] == 0.1
    assert K.RandomSolarize not in kinds(cim.view1) | kinds(cim.view2)
    bt = TwoViewAugment("barlow", 16, MEAN, STD)
    assert K.RandomSolarize not in kinds(bt.view1) and kinds(bt.view2)[K.RandomSolarize] == 0.2
    assert kinds(bt.view1)[ColorJitter] == 0.8 and kinds(bt.view1)[K.RandomGrayscale] == 0.2
    simclr = TwoViewAugment("simclr", 16, MEAN, STD)
    assert set(kinds(simclr.view1)) == {ColorJitter, K.RandomGrayscale}
    # Barlow's solarize inverts values at or above 0.51 (REFERENCE.md section 2.4)
    sol = next(m for m in bt.view2.photometric if isinstance(m, K.RandomSolarize))
    sol.p = 1.0
    ramp = torch.tensor([0.0, 0.3, 0.5, 0.509, 0.511, 0.8, 1.0]).view(1, 1, 1, 7).repeat(1, 3, 1, 1)
    out = sol(ramp)[0, 0, 0]
    assert torch.allclose(out, torch.tensor([0.0, 0.3, 0.5, 0.509, 0.489, 0.2, 0.0]), atol=1e-6)


def test_crop_size_option_and_errors() -> None:
    aug = TwoViewAugment("byol", 16, MEAN, STD, crop_size=32)  # the reference's fixed BYOL crop
    v1, v2 = aug(identical_batch(4))
    assert v1.shape == v2.shape == (4, 3, 32, 32)
    with pytest.raises(CromoError, match="uint8"):
        aug(torch.zeros(2, 3, 16, 16))
    other = TwoViewAugment("supervised", 16, MEAN, STD)  # objectives without an entry: the default pipeline
    assert [type(m) for m in other.view2.photometric] == [ColorJitter, K.RandomGrayscale]


def test_crop_size_reaches_the_training_views(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`--set crop_size=32` on 16x16 digits: the trainer's views are 32x32 and the step runs; 0 means the image
    size; a negative size is a one-line error."""
    from cromo_bench.data import load_digits
    from cromo_bench.experiment import build_config
    from cromo_bench.parts import augment_views
    from cromo_bench.tracking import MemoryTracker
    from cromo_bench.train import Trainer
    from tests.helpers import TINY_SETS

    data = load_digits(16).subset_per_class(24)
    for size, expected in ((32, 32), (0, 16)):
        sets = TINY_SETS + [f"crop_size={size}", f"run_dir={tmp_path}", "device=cpu"]
        t = Trainer(build_config("finetune", "byol", "digits-5x2", sets=sets), MemoryTracker(), data, progress=False)
        v1, v2 = augment_views(t.parts.augment, t.train_x[:8])
        assert v1.shape == v2.shape == (8, 3, expected, expected)
        t.begin_task(0, resumed=False)
        terms = t.step(0, t.task_idx[0][:16], None)
        assert all(torch.isfinite(v) for v in terms.values())
    with pytest.raises(CromoError, match="crop_size must be >= 0"):
        build_config("finetune", "byol", "digits-5x2", sets=["crop_size=-1"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda() -> None:
    aug = TwoViewAugment("barlow", 16, MEAN, STD).cuda()
    torch.manual_seed(0)
    v1, v2 = aug(identical_batch(8).cuda())
    assert v1.is_cuda and v2.is_cuda and v1.dtype == torch.float32
