"""Optimizers and learning-rate schedules (REFERENCE.md section 10).

LARS (the reference's solo-learn-style variant), for each parameter w with gradient g:
- ndim > 1: r = η·‖w‖/(‖g‖ + wd·‖w‖ + 1e-8); clipped r ← min(r/lr, 1); direction d = (g + wd·w)·r.
  If ‖w‖ = 0 or ‖g‖ = 0, r = 1 (so a zero-initialised weight can still move).
- ndim ≤ 1 (biases, norm parameters): d = g, with neither scaling nor weight decay.
- momentum buffer b ← μ·b + d (b starts at 0); w ← w − lr·b.
SGD is torch's (momentum, weight decay on every parameter, as the reference's CorInfoMax runs).
`LARS(foreach=False)` computes the same update one parameter at a time, the reference code's structure (a
Python loop with a host-side test of the norms), for the reference-style pipeline of `cromo-bench perf`.

Schedule per epoch e of E (a fresh schedule in every task): with W warmup epochs,
- e < W: lr = min_lr + e·(base − min_lr)/max(1, W − 1)  (linear from min_lr; base is reached at e = W − 1),
- e ≥ W: lr = min_lr + ½·(base − min_lr)·(1 + cos(π·(e − W)/(E − W))).
W = 0 gives the plain cosine from base to min_lr. Tasks ≥ 1 use base = lr·later_lr_factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from cromo_bench.config import RunConfig
from cromo_bench.errors import CromoError

ParamsLike = Iterable[nn.Parameter] | Iterable[tuple[str, nn.Parameter]]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling, clipped; 1-D parameters are excluded."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, clip: bool = True, eps: float = 1e-8, foreach: bool = True) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(f"invalid LARS settings lr={lr} momentum={momentum} wd={weight_decay} eta={eta}")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "clip": clip,
                    "eps": eps}
        super().__init__(params, defaults)
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if self.foreach:
                self._step_group(group)
            else:
                self._step_group_loop(group)
        return loss

    def _step_group_loop(self, group: dict[str, Any]) -> None:
        """The same update, parameter by parameter; the zero-norm test and the clip run on the host."""
        lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            d = p.grad
            if p.ndim > 1:
                w_norm, g_norm = torch.norm(p), torch.norm(p.grad)
                r: Tensor | float = 1.0
                if w_norm != 0 and g_norm != 0:
                    r = group["eta"] * w_norm / (g_norm + wd * w_norm + group["eps"])
                    if group["clip"] and lr > 0:
                        r = min(r / lr, 1.0)
                d = d.add(p, alpha=wd) * r
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buf = state["momentum_buffer"]
            buf.mul_(mom).add_(d)
            p.add_(buf, alpha=-lr)

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        scaled = [p for p in params if p.ndim > 1]
        plain = [p for p in params if p.ndim <= 1]
        directions: list[Tensor] = [p.grad for p in plain]  # type: ignore[misc]
        if scaled:
            grads: list[Tensor] = [p.grad for p in scaled]  # type: ignore[misc]
            w_norm = torch.stack(torch._foreach_norm(scaled))  # (P,)
            g_norm = torch.stack(torch._foreach_norm(grads))  # (P,)
            r = group["eta"] * w_norm / (g_norm + wd * w_norm + group["eps"])  # (P,)
            if group["clip"] and lr > 0:
                r = torch.clamp(r / lr, max=1.0)
            r = torch.where((w_norm > 0) & (g_norm > 0), r, torch.ones_like(r))
            d = torch._foreach_add(grads, scaled, alpha=wd) if wd != 0 else [g.clone() for g in grads]
            torch._foreach_mul_(d, list(r.to(d[0].dtype).unbind()))
            directions = directions + list(d)
        ordered = plain + scaled
        bufs = []
        for p in ordered:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        torch._foreach_mul_(bufs, mom)  # b <- mu * b + d
        torch._foreach_add_(bufs, directions)
        torch._foreach_add_(ordered, bufs, alpha=-lr)  # w <- w - lr * b


def _unique_params(params: ParamsLike) -> list[nn.Parameter]:
    out: list[nn.Parameter] = []
    seen: set[int] = set()
    for item in params:
        p = item[1] if isinstance(item, tuple) else item
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def build_optimizer(params: ParamsLike, cfg: RunConfig, lr: float, foreach: bool = True) -> torch.optim.Optimizer:
    """The optimizer of `cfg.optimizer` ("lars" | "sgd") over the trainable parameters, at learning rate `lr`.

    `params` may be parameters or (name, parameter) pairs; frozen and repeated parameters are dropped.
    `foreach=False`: one parameter at a time (the reference's structure; the same update).
    """
    plist = _unique_params(params)
    if not plist:
        raise CromoError("build_optimizer: no trainable parameters")
    if cfg.optimizer == "lars":
        return LARS(plist, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, eta=cfg.lars_eta,
                    foreach=foreach)
    if cfg.optimizer == "sgd":
        if not foreach:
            return torch.optim.SGD(plist, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                   foreach=False)
        fused = all(p.is_cuda and p.is_floating_point() for p in plist)
        return torch.optim.SGD(plist, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               fused=True if fused else None)
    raise CromoError(f"unknown optimizer '{cfg.optimizer}'; choose one of: lars, sgd")


def lr_at(epoch: int, epochs: int, base_lr: float, warmup_epochs: int, min_lr: float) -> float:
    """The learning rate of 0-based `epoch` in a task of `epochs` epochs (see the module docstring)."""
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return min_lr + epoch * (base_lr - min_lr) / max(1, warmup_epochs - 1)
    span = max(1, epochs - warmup_epochs)
    progress = min(max(epoch - warmup_epochs, 0), span) / span
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def task_lr(cfg: RunConfig, task: int) -> float:
    """The base learning rate of 0-based `task`: cfg.lr, times cfg.later_lr_factor from the second task on."""
    return cfg.lr * (cfg.later_lr_factor if task >= 1 else 1.0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
