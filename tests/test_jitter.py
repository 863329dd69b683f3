"""The batched colour jitter against torchvision's per-image functional ops (REFERENCE.md section 2.4)."""

from __future__ import annotations

import colorsys
import itertools

import pytest
import torch
import torchvision.transforms.functional as TF

from cromo_bench.jitter import OPS, ColorJitter, JitterParams, adjust, shift_hue

TV = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast, "saturation": TF.adjust_saturation,
      "hue": TF.adjust_hue}


def images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    x[0] = 0.5  # grey: no hue
    x[1, :, : size // 2] = 1.0  # saturated white rows
    x[2] = x[2].round()  # pure primaries and secondaries, where the hue sextant ties break
    x[3, 0], x[3, 1], x[3, 2] = 0.9, 0.9, 0.1  # max shared by R and G
    return x


def torchvision_jitter(x: torch.Tensor, p: JitterParams) -> torch.Tensor:
    out = []
    for i in range(len(x)):
        y = x[i]
        if p.applied[i]:
            for j in p.order[i].tolist():
                y = TV[OPS[j]](y, float(p.factors[i, j]))
        out.append(y)
    return torch.stack(out)


@pytest.mark.parametrize("jitter", [(0.4, 0.4, 0.2, 0.1), (0.4, 0.4, 0.4, 0.1), (0.8, 0.0, 0.5, 0.5)])
def test_batch_equals_torchvision_image_by_image(jitter: tuple[float, float, float, float]) -> None:
    cj = ColorJitter(*jitter, p=0.8)
    x = images(300)
    params = cj.sample(len(x), torch.Generator().manual_seed(1))
    got = cj.jitter(x, params)
    torch.testing.assert_close(got, torchvision_jitter(x, params), rtol=0, atol=1e-5)
    assert (got != x).flatten(1).any(1).sum() >= 200  # most images changed (p = 0.8)


@pytest.mark.parametrize("op", OPS[:3])
def test_blends_match_torchvision_in_float64(op: str) -> None:
    x = images(40, seed=2).double()
    f = torch.linspace(0.0, 2.0, 40, dtype=torch.float64)
    got = adjust(op, x, f.view(-1, 1, 1, 1))
    want = torch.stack([TV[op](x[i], float(f[i])) for i in range(40)])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_hue_matches_colorsys_in_float64() -> None:
    """torchvision shifts hue in float32; the standard library's colorsys, pixel by pixel, is the float64
    reference."""
    x = images(12, size=4, seed=4).double()
    f = torch.linspace(-0.5, 0.5, 12, dtype=torch.float64)
    got = adjust("hue", x, f.view(-1, 1, 1, 1))
    want = torch.empty_like(x)
    for i, j, k in itertools.product(range(12), range(4), range(4)):
        h, s, v = colorsys.rgb_to_hsv(*x[i, :, j, k].tolist())
        want[i, :, j, k] = torch.tensor(colorsys.hsv_to_rgb((h + float(f[i])) % 1.0, s, v), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_hue_shift_by_hand() -> None:
    primaries = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]]).view(4, 3, 1, 1)
    third = torch.full((4, 1, 1, 1), 1 / 3)
    want = torch.tensor([[0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 1.0]]).view(4, 3, 1, 1)
    torch.testing.assert_close(shift_hue(primaries, third), want, rtol=0, atol=1e-6)
    half = torch.full((1, 1, 1, 1), 0.5)  # (0.8, 0.4, 0.2): V 0.8, C 0.6, hue 1/18 -> 1/18 + 1/2
    torch.testing.assert_close(shift_hue(torch.tensor([0.8, 0.4, 0.2]).view(1, 3, 1, 1), half).flatten(),
                               torch.tensor([0.2, 0.6, 0.8]), rtol=0, atol=1e-6)


def test_draws_are_per_image() -> None:
    cj = ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8)
    p = cj.sample(6000, torch.Generator().manual_seed(3))
    assert abs(p.applied.float().mean().item() - 0.8) < 0.02
    orders = {tuple(o) for o in p.order.tolist()}
    assert orders == set(itertools.permutations(range(4)))  # every order occurs: one per image
    lo = torch.tensor([0.6, 0.6, 0.8, -0.1])
    hi = torch.tensor([1.4, 1.4, 1.2, 0.1])
    assert bool(((p.factors >= lo) & (p.factors <= hi)).all())
    assert bool((p.factors.amin(0) < lo + 0.01).all() and (p.factors.amax(0) > hi - 0.01).all())
    x = images(5)[4:].repeat(64, 1, 1, 1)  # identical images, different jitter
    torch.manual_seed(0)
    out = cj(x)
    changed = out[(out != x).flatten(1).any(1)]
    assert len({tuple(r.tolist()) for r in changed.flatten(1)}) == len(changed) >= 40


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="invalid colour jitter"):
        ColorJitter(0.4, 0.4, 0.2, 0.6)
    with pytest.raises(ValueError, match="unknown colour adjustment"):
        adjust("gamma", images(5), torch.ones(5, 1, 1, 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu_for_the_same_draws() -> None:
    cj = ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8)
    x = images(64)
    params = cj.sample(len(x), torch.Generator().manual_seed(6))
    torch.testing.assert_close(cj.jitter(x.cuda(), params).cpu(), cj.jitter(x, params), rtol=0, atol=1e-5)
