"""LARS, SGD and the LR schedule against hand-computed values (REFERENCE.md section 10)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError
from cromo_bench.optim import LARS, build_optimizer, lr_at, task_lr


def tiny_linear() -> nn.Linear:
    lin = nn.Linear(2, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
        lin.bias.copy_(torch.tensor([1.0]))
    return lin


def set_grads(lin: nn.Linear) -> None:
    lin.weight.grad = torch.tensor([[0.6, 0.8]], dtype=torch.float64)  # ||g|| = 1
    lin.bias.grad = torch.tensor([0.5], dtype=torch.float64)


def hand_lars(w: list[float], g: list[float], lr: float, wd: float, eta: float) -> list[float]:
    """The direction (g + wd*w)*r of one 2-D parameter, with r = min(eta*|w|/(|g| + wd*|w| + 1e-8)/lr, 1)."""
    wn = math.sqrt(sum(v * v for v in w))
    gn = math.sqrt(sum(v * v for v in g))
    r = min(eta * wn / (gn + wd * wn + 1e-8) / lr, 1.0)
    return [(gi + wd * wi) * r for gi, wi in zip(g, w, strict=True)]


@pytest.mark.parametrize("foreach", [True, False])
def test_lars_one_step_unclipped(foreach: bool) -> None:
    lin = tiny_linear()
    opt = LARS(lin.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1, eta=0.02, foreach=foreach)
    set_grads(lin)
    opt.step()
    # r = 0.02*5/(1 + 0.1*5) = 1/15; r/lr = 2/15 < 1, so d = (g + 0.1 w) * 2/15 = (0.12, 0.16)
    assert lin.weight.tolist()[0] == pytest.approx([3.0 - 0.5 * 0.12, 4.0 - 0.5 * 0.16], abs=1e-8)
    # the bias is excluded from both the scaling and the weight decay: b - lr * g
    assert lin.bias.item() == pytest.approx(1.0 - 0.5 * 0.5, abs=1e-15)


@pytest.mark.parametrize("foreach", [True, False])
def test_lars_clipping_and_momentum(foreach: bool) -> None:
    lin = tiny_linear()
    lr, wd, eta, mom = 0.01, 0.1, 0.02, 0.9
    opt = LARS(lin.parameters(), lr=lr, momentum=mom, weight_decay=wd, eta=eta, foreach=foreach)
    w, b = [3.0, 4.0], 1.0
    buf_w, buf_b = [0.0, 0.0], 0.0
    for _ in range(2):
        set_grads(lin)
        opt.step()
        d = hand_lars(w, [0.6, 0.8], lr, wd, eta)
        buf_w = [mom * bw + di for bw, di in zip(buf_w, d, strict=True)]
        buf_b = mom * buf_b + 0.5
        w = [wi - lr * bw for wi, bw in zip(w, buf_w, strict=True)]
        b = b - lr * buf_b
        assert lin.weight.tolist()[0] == pytest.approx(w, abs=1e-12)
        assert lin.bias.item() == pytest.approx(b, abs=1e-12)
    # r/lr = (1/15)/0.01 > 1 is clipped to 1: the first step was the plain (g + wd*w)
    assert hand_lars([3.0, 4.0], [0.6, 0.8], lr, wd, eta) == pytest.approx([0.9, 1.2], abs=1e-12)


@pytest.mark.parametrize("foreach", [True, False])
def test_lars_zero_weight_still_moves(foreach: bool) -> None:
    p = nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    opt = LARS([p], lr=0.1, momentum=0.9, weight_decay=0.1, eta=0.02, foreach=foreach)
    p.grad = torch.ones(2, 2, dtype=torch.float64)
    opt.step()
    assert torch.allclose(p, torch.full((2, 2), -0.1, dtype=torch.float64))


@pytest.mark.parametrize("optimizer", ["lars", "sgd"])
def test_per_parameter_loop_equals_the_foreach_step(optimizer: str) -> None:
    """The reference-style optimizer (one parameter at a time) makes the same updates as the project's."""
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)).double() for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    with torch.no_grad():
        for net in nets:
            net[2].weight.zero_()  # a zero weight: r = 1
    cfg = RunConfig(optimizer=optimizer, weight_decay=1e-2, momentum=0.9)
    opts = [build_optimizer(net.parameters(), cfg, lr=0.3, foreach=f)
            for net, f in zip(nets, (True, False), strict=True)]
    x = torch.randn(16, 4, dtype=torch.float64)
    for _ in range(3):
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert not torch.equal(nets[0][2].weight, torch.zeros(3, 8, dtype=torch.float64))


def test_build_optimizer_sgd_and_lars() -> None:
    lin = tiny_linear()
    frozen = nn.Parameter(torch.ones(3), requires_grad=False)
    named: list[tuple[str, nn.Parameter]] = [*lin.named_parameters(), ("frozen", frozen), ("dup", lin.weight)]  # type: ignore[list-item]
    opt = build_optimizer(named, RunConfig(optimizer="lars", lars_eta=0.05), lr=0.3)
    assert isinstance(opt, LARS)
    assert len(opt.param_groups[0]["params"]) == 2
    assert opt.param_groups[0]["eta"] == 0.05 and opt.param_groups[0]["lr"] == 0.3
    sgd_cfg = RunConfig(optimizer="sgd", weight_decay=0.1, momentum=0.9)
    opt = build_optimizer(lin.parameters(), sgd_cfg, lr=0.5)
    assert isinstance(opt, torch.optim.SGD)
    set_grads(lin)
    opt.step()  # SGD decays every parameter, the bias included
    assert lin.weight.tolist()[0] == pytest.approx([3.0 - 0.5 * 0.9, 4.0 - 0.5 * 1.2], abs=1e-12)
    assert lin.bias.item() == pytest.approx(1.0 - 0.5 * (0.5 + 0.1), abs=1e-12)
    with pytest.raises(CromoError, match="lars, sgd"):
        build_optimizer(lin.parameters(), RunConfig(optimizer="adam"), lr=0.1)


def test_lr_schedule_hand_values() -> None:
    # no warmup: cosine from base to min over E epochs
    assert lr_at(0, 10, 1.0, 0, 0.0) == pytest.approx(1.0)
    assert lr_at(5, 10, 1.0, 0, 0.0) == pytest.approx(0.5)
    assert lr_at(9, 10, 0.4, 0, 0.0) == pytest.approx(0.2 * (1 + math.cos(0.9 * math.pi)))
    assert lr_at(2, 4, 1.0, 0, 0.2) == pytest.approx(0.6)
    # warmup W=4 from min_lr, reaching base at epoch W-1, then cosine over E-W epochs
    assert lr_at(0, 20, 1.0, 4, 0.001) == pytest.approx(0.001)
    assert lr_at(1, 20, 1.0, 4, 0.001) == pytest.approx(0.001 + 0.999 / 3)
    assert lr_at(3, 20, 1.0, 4, 0.001) == pytest.approx(1.0)
    assert lr_at(4, 20, 1.0, 4, 0.001) == pytest.approx(1.0)
    assert lr_at(12, 20, 1.0, 4, 0.001) == pytest.approx(0.001 + 0.4995)
    assert lr_at(19, 20, 1.0, 4, 0.001) == pytest.approx(0.001 + 0.4995 * (1 + math.cos(15 / 16 * math.pi)))


def test_task_lr() -> None:
    cfg = RunConfig(lr=1.2, later_lr_factor=0.1)
    assert task_lr(cfg, 0) == pytest.approx(1.2)
    assert task_lr(cfg, 1) == pytest.approx(0.12)
    assert task_lr(cfg, 4) == pytest.approx(0.12)
    assert task_lr(RunConfig(lr=0.1), 3) == pytest.approx(0.1)
