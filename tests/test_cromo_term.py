"""The CroMo term (REFERENCE.md sections 5, 6, 8) and the CaSSLe distillation (section 7) against hand-written
float64 formulas on fixed tensors, for every objective and both lambda modes. The formulas below are written
here from the spec, independently of the library's loss functions."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from baselines.cassle import CaSSLe
from cromo_bench.config import RunConfig
from cromo_bench.method import Step
from cromo_bench.models import Encoder
from cromo_bench.objectives.base import Objective
from cromo_bench.registry import lookup
from methods.cromo_mixup import CromoMixup, draw_lambda

SSL = ["barlow", "corinfomax", "simclr", "byol"]
D_IN, FEAT = 3 * 4 * 4, 10


# --- the losses S, written from REFERENCE.md section 3 ------------------------------------------------------


def bt(a: Tensor, b: Tensor, lambd: float = 5e-3, scale: float = 0.1) -> Tensor:
    """scale * [sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2], C from batch-standardised columns."""
    n = a.shape[0]
    sa = (a - a.mean(0)) / torch.sqrt(((a - a.mean(0)) ** 2).sum(0) / (n - 1))
    sb = (b - b.mean(0)) / torch.sqrt(((b - b.mean(0)) ** 2).sum(0) / (n - 1))
    c = torch.einsum("ni,nj->ij", sa, sb) / n
    eye = torch.eye(c.shape[0], dtype=c.dtype)
    return scale * (((1 - c) ** 2 * eye).sum() + lambd * (c**2 * (1 - eye)).sum())


def unit(x: Tensor) -> Tensor:
    return x / torch.sqrt((x**2).sum(1, keepdim=True))


def nt_xent(a: Tensor, b: Tensor, tau: float = 0.5) -> Tensor:
    """-(1/2N) sum_i log[exp(s_i.s_i+ / tau) / sum_{k != i} exp(s_i.s_k / tau)] over s = unit([a; b])."""
    s = unit(torch.cat([a, b]))
    n2 = s.shape[0]
    total = torch.zeros((), dtype=s.dtype)
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        denom = sum(torch.exp(s[i] @ s[k] / tau) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(s[i] @ s[pos] / tau) / denom)
    return total / n2


def neg_cos(p: Tensor, t: Tensor) -> Tensor:
    """mean_n 2 - 2 cos(p_n, t_n)."""
    return (2 - 2 * (unit(p) * unit(t)).sum(1)).mean()


def fresh_cov(z: Tensor, la_r: float, la_mu: float) -> Tensor:
    """One running-covariance update from mu = 0, R = I on rows z: R = la_R I + (1 - la_R) cov_mu(z)."""
    mu = (1 - la_mu) * z.mean(0)
    zc = z - mu
    return la_r * torch.eye(z.shape[1], dtype=z.dtype) + (1 - la_r) * zc.T @ zc / z.shape[0]


def logdet_term(ra: Tensor, rb: Tensor, eps: float) -> Tensor:
    eye = torch.eye(ra.shape[0], dtype=ra.dtype)
    return -(torch.logdet(ra + eps * eye) + torch.logdet(rb + eps * eye)) / ra.shape[0]


def corinfomax_native(a: Tensor, b: Tensor, cfg: RunConfig) -> Tensor:
    """alpha MSE(n(a), n(b)) - (1/D)[logdet R_a + logdet R_b], moments from a fresh state."""
    na, nb = unit(a), unit(b)
    inv = cfg.cim_alpha * ((na - nb) ** 2).mean()
    ra, rb = fresh_cov(na, cfg.cim_la_r, cfg.cim_la_mu), fresh_cov(nb, cfg.cim_la_r, cfg.cim_la_mu)
    return inv + logdet_term(ra, rb, cfg.cim_eps)


def S(ssl: str, cfg: RunConfig, a: Tensor, b: Tensor) -> Tensor:
    """The CroMo term's loss per objective (REFERENCE.md section 6 table; `cromo_loss`)."""
    if ssl == "barlow":
        return bt(a, b)
    if ssl == "corinfomax":
        return bt(unit(a), unit(b)) if cfg.cromo_loss == "bt" else corinfomax_native(a, b, cfg)
    if ssl == "simclr":
        return nt_xent(a, b, cfg.temperature)
    return neg_cos(a, b)


def expected_distill(ssl: str, cfg: RunConfig, p1: Tensor, p2: Tensor, o1: Tensor, o2: Tensor) -> Tensor:
    """REFERENCE.md section 7: p_v = g(z_v), o_v the old model's output; CorInfoMax is asymmetric."""
    if ssl == "corinfomax":
        inv = cfg.cim_alpha * ((unit(p2) - unit(o2)) ** 2).mean()
        ra = fresh_cov(unit(p1), cfg.cim_la_r, cfg.cim_la_mu)
        rb = fresh_cov(unit(o1), cfg.cim_la_r, cfg.cim_la_mu)
        raw = inv + logdet_term(ra, rb, cfg.cim_eps)
    else:
        raw = 0.5 * S(ssl, cfg, p1, o1) + 0.5 * S(ssl, cfg, p2, o2)
    return cfg.distill_weight * raw


# --- fixed models and tensors -------------------------------------------------------------------------------


def perturb(module: nn.Module, seed: int, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


Built = tuple[RunConfig, Any, Encoder, Encoder, Any]  # objective and method: attribute access in tests


def build(ssl: str, method_cls: type, **kw: object) -> Built:
    values = dict(method="cromo", ssl=ssl, proj_hidden=12, proj_out=6, pred_hidden=12, distill_hidden=12,
                  memory=4, replay_bs=3, mix_lambda=0.7, mix_alpha=0.5, cim_alpha=2.0, distill_weight=0.5)
    values |= kw
    cfg = RunConfig(**values)  # type: ignore[arg-type]
    torch.manual_seed(0)
    objective: Objective = lookup("objective", ssl)(cfg, FEAT)
    encoder = Encoder(nn.Sequential(nn.Flatten(), nn.Linear(D_IN, FEAT)), objective.build_projector())
    objective.attach(encoder)  # BYOL's EMA target is a copy of the encoder at this point
    perturb(encoder, 1)  # online != EMA target
    old = copy.deepcopy(encoder)
    perturb(old, 2)  # old != current
    for p in old.parameters():
        p.requires_grad_(False)
    method = method_cls(cfg, objective)
    for m in (objective, encoder, old, method):
        m.double().train()
    return cfg, objective, encoder, old, method


def views(seed: int, n: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, 4, 4, generator=g, dtype=torch.float64),
            torch.randn(n, 3, 4, 4, generator=g, dtype=torch.float64))


# --- the CroMo term -----------------------------------------------------------------------------------------


CASES = [(s, "native") for s in SSL] + [("corinfomax", "bt")]


@pytest.mark.parametrize(("batch", "replay_bs"), [(5, 3), (3, 4)])
@pytest.mark.parametrize("lambda_mode", ["fixed", "beta"])
@pytest.mark.parametrize(("ssl", "cromo_loss"), CASES)
def test_cromo_term_matches_section_6(ssl, cromo_loss, lambda_mode, batch, replay_bs):
    cfg, objective, encoder, old, method = build(ssl, CromoMixup, lambda_mode=lambda_mode,
                                                 cromo_loss=cromo_loss, replay_bs=replay_bs,
                                                 detach_current_target=False)
    x1, x2 = views(10, batch)
    b1_all, b2_all = views(11, 8)
    requested: list[int] = []

    def replay(n: int) -> tuple[Tensor, Tensor]:
        requested.append(n)
        return b1_all[:n], b2_all[:n]

    gen = torch.Generator().manual_seed(7)
    lam = draw_lambda(cfg, torch.Generator().set_state(gen.get_state()))  # the draw the step will make
    if lambda_mode == "fixed":
        assert lam == 0.7
    else:
        assert 0 < lam < 1 and lam != 0.7
    terms = method.loss_terms(Step(x1, x2, 1, encoder, objective, old, replay, gen))
    assert set(terms) == {"ssl", "distill", "cromo"}
    m = min(batch, replay_bs)
    assert requested == [m]

    # section 8, by hand
    total = torch.zeros((), dtype=torch.float64)
    for x, b in ((x1, b1_all[:m]), (x2, b2_all[:m])):
        mixed = lam * x[:m] + (1 - lam) * b  # pixel mixup of current sample i with buffer sample i
        z = encoder(torch.cat([x, mixed]))  # (B + m, D): one forward, shared BN statistics
        with torch.no_grad():
            o = old(torch.cat([x, b]))  # (B + m, D)
        if ssl == "byol":
            query = objective.predictor(z[batch:])
            with torch.no_grad():
                current = objective.ema(x[:m])
        else:
            query, current = z[batch:], z[:m]
        total = total + lam * S(ssl, cfg, query, current) + (1 - lam) * S(ssl, cfg, query, o[batch:])
    expected = 0.5 * total
    torch.testing.assert_close(terms["cromo"], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ssl", SSL)
@pytest.mark.parametrize("detach", [True, False])
def test_cromo_gradient_follows_detach_current_target(ssl, detach):
    """Detached: the gradient reaches the encoder only through the mixed query (reference: the target too)."""
    cfg, objective, encoder, old, method = build(ssl, CromoMixup, lambda_mode="fixed", mix_lambda=0.6,
                                                 detach_current_target=detach, cromo_loss="bt")
    x1, x2 = views(10, 5)
    b1, b2 = views(11, 3)
    step = Step(x1, x2, 1, encoder, objective, old, lambda n: (b1[:n], b2[:n]), torch.Generator())
    params = [p for p in encoder.parameters() if p.requires_grad]
    got = torch.autograd.grad(method.loss_terms(step)["cromo"], params)
    total = torch.zeros((), dtype=torch.float64)
    for x, b in ((x1, b1), (x2, b2)):
        z = encoder(torch.cat([x, 0.6 * x[:3] + 0.4 * b]))
        with torch.no_grad():
            o = old(torch.cat([x, b]))
        if ssl == "byol":
            query = objective.predictor(z[5:])
            with torch.no_grad():
                current = objective.ema(x[:3])
        else:
            query, current = z[5:], (z[:3].detach() if detach else z[:3])
        total = total + 0.6 * S(ssl, cfg, query, current) + 0.4 * S(ssl, cfg, query, o[5:])
    want = torch.autograd.grad(0.5 * total, params)
    for g_got, g_want in zip(got, want, strict=True):
        torch.testing.assert_close(g_got, g_want, rtol=1e-8, atol=1e-10)
    if ssl != "byol":  # the two settings really differ (BYOL's target never carries a gradient)
        other = build(ssl, CromoMixup, lambda_mode="fixed", mix_lambda=0.6, detach_current_target=not detach,
                      cromo_loss="bt")
        step2 = Step(x1, x2, 1, other[2], other[1], other[3], lambda n: (b1[:n], b2[:n]), torch.Generator())
        params2 = [p for p in other[2].parameters() if p.requires_grad]
        got2 = torch.autograd.grad(other[4].loss_terms(step2)["cromo"], params2)
        assert any(not torch.allclose(a, b) for a, b in zip(got, got2, strict=True))


@pytest.mark.parametrize("ssl", SSL)
def test_cromo_distillation_uses_the_first_b_rows(ssl):
    cfg, objective, encoder, old, method = build(ssl, CromoMixup, lambda_mode="fixed")
    x1, x2 = views(10, 5)
    b1, b2 = views(11, 3)
    terms = method.loss_terms(Step(x1, x2, 1, encoder, objective, old, lambda n: (b1[:n], b2[:n]),
                                   torch.Generator()))
    mix1, mix2 = 0.7 * x1[:3] + 0.3 * b1, 0.7 * x2[:3] + 0.3 * b2
    z1, z2 = encoder(torch.cat([x1, mix1]))[:5], encoder(torch.cat([x2, mix2]))[:5]
    with torch.no_grad():
        o1, o2 = old(torch.cat([x1, b1]))[:5], old(torch.cat([x2, b2]))[:5]
    g = method.cassle.g
    expected = expected_distill(ssl, cfg, g(z1), g(z2), o1, o2)
    torch.testing.assert_close(terms["distill"], expected, rtol=1e-9, atol=1e-12)


# --- CaSSLe's distillation (section 7) ----------------------------------------------------------------------


@pytest.mark.parametrize("weight", [1.0, 0.25])
@pytest.mark.parametrize("ssl", SSL)
def test_cassle_distillation_matches_section_7(ssl, weight):
    cfg, objective, encoder, old, method = build(ssl, CaSSLe, method="cassle", distill_weight=weight)
    x1, x2 = views(20, 6)
    terms = method.loss_terms(Step(x1, x2, 1, encoder, objective, old, None, torch.Generator()))
    assert set(terms) == {"ssl", "distill"}
    with torch.no_grad():
        o1, o2 = old(x1), old(x2)  # the same view through the frozen old model
    g = method.g
    expected = expected_distill(ssl, cfg, g(encoder(x1)), g(encoder(x2)), o1, o2)
    torch.testing.assert_close(terms["distill"], expected, rtol=1e-9, atol=1e-12)
    assert isinstance(g[0], nn.Linear) and g[0].bias is None and isinstance(g[1], nn.BatchNorm1d)
    assert g[0].in_features == cfg.proj_out == g[3].out_features and g[0].out_features == cfg.distill_hidden


# --- lambda -------------------------------------------------------------------------------------------------


def test_fixed_lambda_is_the_configured_value():
    cfg = RunConfig(lambda_mode="fixed", mix_lambda=0.3)
    assert {draw_lambda(cfg, torch.Generator().manual_seed(s)) for s in range(5)} == {0.3}


@pytest.mark.parametrize("alpha", [1.0, 0.2, 4.0])
def test_beta_lambda_follows_beta_alpha_alpha_and_the_generator(alpha):
    cfg = RunConfig(lambda_mode="beta", mix_alpha=alpha)
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([draw_lambda(cfg, gen) for _ in range(4000)], dtype=torch.float64)
    assert ((draws > 0) & (draws < 1)).all()
    assert abs(float(draws.mean()) - 0.5) < 0.02
    var = 1 / (4 * (2 * alpha + 1))  # Beta(a, a)
    assert math.isclose(float(draws.var()), var, rel_tol=0.1)
    again = [draw_lambda(cfg, torch.Generator().manual_seed(0)) for _ in range(2)]
    assert again[0] == again[1] == float(draws[0])
