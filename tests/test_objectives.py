"""The four SSL objectives against direct float64 implementations of REFERENCE.md section 3 (loops and
explicit sums written here, independent of the library code), plus a short training run per objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cromo_bench.config import RunConfig, with_values
from cromo_bench.objectives.barlow import barlow_twins_loss
from cromo_bench.objectives.byol import BYOL, byol_loss, ema_tau
from cromo_bench.objectives.corinfomax import CorInfoMax, CorInfoMaxLoss, corinfomax_loss
from cromo_bench.objectives.simclr import nt_xent_loss
from cromo_bench.registry import lookup, names

REL = 1e-6


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def rand(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- direct implementations ------------------------------------------------------------------------


def direct_bt(a: np.ndarray, b: np.ndarray, lambd: float, scale: float) -> float:
    n, d = a.shape

    def standardise(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        for j in range(d):
            m = sum(x[k, j] for k in range(n)) / n
            s = math.sqrt(sum((x[k, j] - m) ** 2 for k in range(n)) / (n - 1))
            for k in range(n):
                out[k, j] = (x[k, j] - m) / s
        return out

    sa, sb = standardise(a), standardise(b)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(sa[k, i] * sb[k, j] for k in range(n)) / n
            total += (1 - c) ** 2 if i == j else lambd * c**2
    return scale * total


def unit_rows(x: np.ndarray) -> np.ndarray:
    return np.array([row / math.sqrt(sum(v * v for v in row)) for row in x])


def direct_nt_xent(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    s = unit_rows(np.concatenate([a, b]))
    n2 = len(s)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = i + n if i < n else i - n
        sims = [sum(s[i, k] * s[j, k] for k in range(s.shape[1])) / tau for j in range(n2)]
        den = sum(math.exp(sims[j]) for j in range(n2) if j != i)
        total -= math.log(math.exp(sims[pos]) / den)
    return total / n2


def cos(u: np.ndarray, v: np.ndarray) -> float:
    return sum(u * v) / math.sqrt(sum(u * u) * sum(v * v))


def direct_byol(pa: np.ndarray, pb: np.ndarray, ta: np.ndarray, tb: np.ndarray) -> float:
    n = len(pa)
    return sum(0.5 * (2 - 2 * cos(pa[i], tb[i])) + 0.5 * (2 - 2 * cos(pb[i], ta[i])) for i in range(n)) / n


def direct_moments(z: np.ndarray, mu: np.ndarray, r: np.ndarray, la_r: float, la_mu: float):
    n, d = z.shape
    mean = np.array([sum(z[k, j] for k in range(n)) / n for j in range(d)])
    mu_new = la_mu * mu + (1 - la_mu) * mean
    acc = np.zeros((d, d))
    for k in range(n):
        c = z[k] - mu_new
        acc += np.outer(c, c)
    return mu_new, la_r * r + (1 - la_r) * acc / n


def logdet(m: np.ndarray) -> float:
    return float(sum(math.log(v) for v in np.linalg.eigvalsh(m)))


def direct_cim_step(za, zb, state, alpha, la_r, la_mu, eps):
    """One CorInfoMax step; returns (loss, new state) with state = (mu_a, R_a, mu_b, R_b)."""
    za, zb = unit_rows(za), unit_rows(zb)
    n, d = za.shape
    mu_a, r_a = direct_moments(za, state[0], state[1], la_r, la_mu)
    mu_b, r_b = direct_moments(zb, state[2], state[3], la_r, la_mu)
    mse = sum((za[k, j] - zb[k, j]) ** 2 for k in range(n) for j in range(d)) / (n * d)
    eye = np.eye(d)
    loss = alpha * mse - (logdet(r_a + eps * eye) + logdet(r_b + eps * eye)) / d
    return loss, (mu_a, r_a, mu_b, r_b)


def fresh(d: int):
    return (np.zeros(d), np.eye(d), np.zeros(d), np.eye(d))


# --- the losses ------------------------------------------------------------------------------------


def test_barlow_twins_matches_direct_formula() -> None:
    a, b = rand(10, 5, 0), rand(10, 5, 1)
    got = barlow_twins_loss(a, b, lambd=0.3, scale=0.7).item()
    assert rel_err(got, direct_bt(a.numpy(), b.numpy(), 0.3, 0.7)) < REL
    assert rel_err(barlow_twins_loss(a, b).item(), direct_bt(a.numpy(), b.numpy(), 5e-3, 0.1)) < REL


def bt_dxd(a: torch.Tensor, b: torch.Tensor, lambd: float, scale: float) -> torch.Tensor:
    """Barlow Twins through the full (D, D) cross-correlation matrix, in autograd (for gradients)."""
    za = (a - a.mean(0)) / a.std(0)
    zb = (b - b.mean(0)) / b.std(0)
    c = za.T @ zb / a.shape[0]
    off = c - torch.diag(torch.diagonal(c))
    return scale * ((torch.diagonal(c) - 1).pow(2).sum() + lambd * off.pow(2).sum())


@pytest.mark.parametrize(("n", "d"), [(6, 9), (9, 6), (8, 8)])  # the Gram path (N < D) and the (D, D) path
def test_barlow_twins_both_paths_match_direct_formula_and_gradients(n: int, d: int) -> None:
    a, b = rand(n, d, 20).requires_grad_(), rand(n, d, 21).requires_grad_()
    got = barlow_twins_loss(a, b, lambd=0.2, scale=0.5)
    assert rel_err(got.item(), direct_bt(a.detach().numpy(), b.detach().numpy(), 0.2, 0.5)) < REL
    ga, gb = torch.autograd.grad(got, (a, b))
    wa, wb = torch.autograd.grad(bt_dxd(a, b, 0.2, 0.5), (a, b))
    torch.testing.assert_close(ga, wa, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gb, wb, rtol=1e-9, atol=1e-12)


def test_barlow_twins_float32_gram_path_is_accurate_at_paper_shapes() -> None:
    """N = 256, D = 2048 (the Gram path) near convergence (views almost equal): float32 value and gradient
    against the float64 (D, D) formula."""
    a = rand(256, 2048, 22)
    b = a + 0.05 * rand(256, 2048, 23)
    a32, b32 = a.float().requires_grad_(), b.float().requires_grad_()
    got = barlow_twins_loss(a32, b32)
    a64 = a.clone().requires_grad_()
    want = bt_dxd(a64, b, 5e-3, 0.1)
    assert rel_err(got.item(), want.item()) < 1e-5
    (g32,), (g64,) = torch.autograd.grad(got, a32), torch.autograd.grad(want, a64)
    assert (g32.double() - g64).norm() / g64.norm() < 1e-4


def test_losses_keep_float32_under_bf16_autocast() -> None:
    """Under autocast the networks' bf16 outputs reach the losses, which compute in float32."""
    a, b = rand(16, 32, 24).bfloat16(), rand(16, 32, 25).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bt, nt = barlow_twins_loss(a, b), nt_xent_loss(a, b)
        state = (torch.zeros(32, dtype=torch.float64), torch.eye(32, dtype=torch.float64))
        ci = corinfomax_loss(a, b, state, state)[0]
    assert bt.dtype == nt.dtype == ci.dtype == torch.float32
    assert rel_err(bt.item(), barlow_twins_loss(a.float(), b.float()).item()) < 1e-6
    assert rel_err(nt.item(), nt_xent_loss(a.float(), b.float()).item()) < 1e-6
    assert rel_err(ci.item(), corinfomax_loss(a.float(), b.float(), state, state)[0].item()) < 1e-6


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_nt_xent_matches_direct_formula(tau: float) -> None:
    a, b = rand(6, 4, 2), rand(6, 4, 3)
    got = nt_xent_loss(a, b, temperature=tau).item()
    assert rel_err(got, direct_nt_xent(a.numpy(), b.numpy(), tau)) < REL


def test_byol_loss_matches_direct_formula() -> None:
    pa, pb, ta, tb = (rand(7, 5, s) for s in range(4, 8))
    got = byol_loss(pa, pb, ta, tb).item()
    assert rel_err(got, direct_byol(pa.numpy(), pb.numpy(), ta.numpy(), tb.numpy())) < REL


def test_corinfomax_state_and_loss_over_two_batches() -> None:
    d, alpha, la_r, la_mu, eps = 4, 250.0, 0.01, 0.01, 1e-8
    loss_fn = CorInfoMaxLoss(d, alpha, la_r, la_mu, eps)
    state = fresh(d)
    for step in range(2):
        za = rand(9, d, 10 + step).requires_grad_(True)
        zb = rand(9, d, 20 + step)
        want, state = direct_cim_step(za.detach().numpy(), zb.numpy(), state, alpha, la_r, la_mu, eps)
        got = loss_fn(za, zb)
        assert rel_err(got.item(), want) < REL
        for buf, ref in zip((loss_fn.mu_a, loss_fn.R_a, loss_fn.mu_b, loss_fn.R_b), state, strict=True):
            assert buf.dtype == torch.float64
            assert np.abs(buf.numpy() - ref).max() < 1e-12
        got.backward()  # a second backward works only if the previous state was detached
    assert za.grad is not None and torch.isfinite(za.grad).all()


def test_corinfomax_pure_function_detaches_previous_state() -> None:
    d = 3
    mu = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    r = torch.eye(d, dtype=torch.float64).requires_grad_(True)
    za = rand(6, d, 60).requires_grad_(True)
    loss, new_a, _ = corinfomax_loss(za, rand(6, d, 61), (mu, r), (mu, r), la_R=0.5, la_mu=0.5)
    loss.backward()
    assert mu.grad is None and r.grad is None and za.grad is not None
    assert new_a[1].requires_grad  # the new state keeps the current batch's graph


def test_corinfomax_reset_and_larger_lambda() -> None:
    d = 3
    loss_fn = CorInfoMaxLoss(d, alpha=10.0, la_R=0.3, la_mu=0.2, eps=1e-6)
    za, zb = rand(8, d, 30), rand(8, d, 31)
    first = loss_fn(za, zb).item()
    assert rel_err(first, direct_cim_step(za.numpy(), zb.numpy(), fresh(d), 10.0, 0.3, 0.2, 1e-6)[0]) < REL
    assert rel_err(loss_fn(za, zb).item(), first) > 1e-4  # the state moved
    loss_fn.reset()
    assert torch.equal(loss_fn.R_a, torch.eye(d, dtype=torch.float64)) and not loss_fn.mu_b.any()
    assert rel_err(loss_fn(za, zb).item(), first) < REL


def small_cfg(ssl: str, **over) -> RunConfig:
    cls = lookup("objective", ssl)
    values = {**cls.defaults, "ssl": ssl, "proj_hidden": 16, "proj_out": 6, "pred_hidden": 16}
    return with_values(RunConfig(), {**values, **over})


def test_corinfomax_objective_terms() -> None:
    d, alpha = 6, 250.0
    obj = CorInfoMax(small_cfg("corinfomax"), feat_dim=8)
    z1, z2, p1, p2, o1, o2 = (rand(10, d, s) for s in range(40, 46))
    ssl_state, kd_state = fresh(d), fresh(d)
    for _ in range(2):  # two steps: the SSL and the distillation states evolve separately
        want, ssl_state = direct_cim_step(z1.numpy(), z2.numpy(), ssl_state, alpha, 0.01, 0.01, 1e-8)
        assert rel_err(obj.ssl_loss(z1, z2, z1, z2).item(), want) < REL
        # distillation: alpha * MSE on view 2, covariance log-det of (p1, o1) on the separate state
        n2p, n2o = unit_rows(p2.numpy()), unit_rows(o2.numpy())
        inv = alpha * sum((n2p[k, j] - n2o[k, j]) ** 2 for k in range(10) for j in range(d)) / (10 * d)
        loss_same, kd_state = direct_cim_step(p1.numpy(), o1.numpy(), kd_state, alpha, 0.01, 0.01, 1e-8)
        n1p, n1o = unit_rows(p1.numpy()), unit_rows(o1.numpy())
        mse1 = sum((n1p[k, j] - n1o[k, j]) ** 2 for k in range(10) for j in range(d)) / (10 * d)
        want_kd = inv + (loss_same - alpha * mse1)
        assert rel_err(obj.distill_loss(p1, p2, o1, o2).item(), want_kd) < REL
    # CroMo term, reference: Barlow Twins on L2-normalised inputs
    bt = obj.__class__(small_cfg("corinfomax", cromo_loss="bt", bt_lambda=0.01), feat_dim=8)
    want_bt = direct_bt(unit_rows(p1.numpy()), unit_rows(o1.numpy()), 0.01, 0.1)
    assert rel_err(bt.cromo_pair_loss(p1, o1).item(), want_bt) < REL
    # CroMo term, native: the CorInfoMax loss from a fresh state, and stateless
    want_native = direct_cim_step(p1.numpy(), o1.numpy(), fresh(d), alpha, 0.01, 0.01, 1e-8)[0]
    assert rel_err(obj.cromo_pair_loss(p1, o1).item(), want_native) < REL
    assert rel_err(obj.cromo_pair_loss(p1, o1).item(), want_native) < REL
    obj.start_task(1, 10, 20)
    assert torch.equal(obj.loss_state.R_b, torch.eye(d, dtype=torch.float64))
    assert torch.equal(obj.kd_state.R_a, torch.eye(d, dtype=torch.float64))


# --- BYOL's EMA --------------------------------------------------------------------------------------


def test_byol_tau_schedule_hand_values() -> None:
    assert ema_tau(0, 100, 0.99) == pytest.approx(0.99, abs=1e-15)
    assert ema_tau(50, 100, 0.99) == pytest.approx(0.995, abs=1e-15)
    assert ema_tau(100, 100, 0.99) == pytest.approx(1.0, abs=1e-15)
    assert ema_tau(25, 100, 0.9) == pytest.approx(1 - 0.1 * (math.sqrt(0.5) + 1) / 2, abs=1e-15)


def tiny_encoder() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()


def bn_mean(model: nn.Module) -> torch.Tensor:
    bn = model.get_submodule("1")
    assert isinstance(bn, nn.BatchNorm1d) and bn.running_mean is not None
    return bn.running_mean


def test_byol_ema_update_and_counters() -> None:
    obj = BYOL(small_cfg("byol", ema_base=0.9, proj_out=2), feat_dim=4).double()
    enc = tiny_encoder()
    obj.attach(enc)
    assert obj.ema is not None and not any(p.requires_grad for p in obj.ema.parameters())
    obj.start_task(0, steps_in_task=4, total_steps=10)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(1.0)
        bn_mean(enc).fill_(0.25)
    before = [p.detach().clone() for p in obj.ema.parameters()]
    obj.after_step(enc)  # step k = 0 uses tau_0 = 0.9
    for pt, p0, po in zip(obj.ema.parameters(), before, enc.parameters(), strict=True):
        assert torch.allclose(pt, 0.9 * p0 + 0.1 * po, rtol=0, atol=1e-14)
    assert torch.equal(bn_mean(obj.ema), torch.full((4,), 0.25, dtype=torch.float64))
    assert obj.ema_step == 1 and obj.tau == pytest.approx(1 - 0.1 * (math.cos(math.pi / 10) + 1) / 2)
    obj.start_task(1, steps_in_task=4, total_steps=10)  # global: the counter continues
    assert obj.extra_state() == {"ema_step": 1, "ema_total": 10}
    other = BYOL(small_cfg("byol", ema_schedule="task", proj_out=2), feat_dim=4)
    other.load_extra_state({"ema_step": 3, "ema_total": 10})
    assert other.ema_step == 3
    other.start_task(1, steps_in_task=4, total_steps=10)  # task: restarted with K = 4
    assert other.extra_state() == {"ema_step": 0, "ema_total": 4}


def test_byol_roles() -> None:
    obj = BYOL(small_cfg("byol", proj_out=2), feat_dim=4).double()
    enc = tiny_encoder()
    obj.attach(enc)
    x = rand(5, 3, 50)
    z = enc(x)
    assert not obj.target(x, z).requires_grad
    assert torch.allclose(obj.target(x, z), enc(x))  # a fresh copy equals the online encoder
    a, b = rand(5, 2, 51), rand(5, 2, 52)
    want = sum(2 - 2 * cos(a.numpy()[i], b.numpy()[i]) for i in range(5)) / 5
    assert rel_err(obj.pair_loss(a, b).item(), want) < REL


# --- registry and a short training run -----------------------------------------------------------------


def test_registry_and_defaults() -> None:
    assert {"barlow", "byol", "corinfomax", "simclr"} <= set(names("objective"))
    assert lookup("objective", "byol").defaults["norm"] == "gn"
    assert lookup("objective", "byol").defaults["weight_standardization"] is True
    assert lookup("objective", "corinfomax").defaults["optimizer"] == "sgd"
    assert lookup("objective", "simclr").defaults["lr"] == pytest.approx(1.2)
    assert lookup("objective", "barlow").defaults["lambda_mode"] == "fixed"
    for ssl in ("barlow", "byol", "corinfomax", "simclr"):
        small_cfg(ssl)  # every default is a valid RunConfig value


@pytest.mark.parametrize("ssl", ["barlow", "corinfomax", "simclr", "byol"])
def test_loss_falls_on_digits(ssl: str) -> None:
    from cromo_bench.augment import TwoViewAugment
    from cromo_bench.data import load_digits
    from cromo_bench.models import Encoder, build_backbone
    from cromo_bench.optim import build_optimizer

    data = load_digits(16)
    cfg = small_cfg(ssl, width=4, proj_hidden=32, proj_out=16, pred_hidden=32, image_size=16)
    torch.manual_seed(0)
    backbone, feat_dim = build_backbone(cfg)
    obj = lookup("objective", ssl)(cfg, feat_dim)
    enc = Encoder(backbone, obj.build_projector())
    obj.attach(enc)
    x1, x2 = TwoViewAugment(ssl, 16, data.mean, data.std)(data.train_x[:64])
    params = list(enc.named_parameters()) + list(obj.named_parameters())
    opt = build_optimizer(params, cfg, cfg.lr)

    def probe() -> float:
        with torch.no_grad():
            z1, z2 = enc(x1), enc(x2)
            if ssl != "corinfomax":
                return obj.ssl_loss(x1, x2, z1, z2).item()
            # CorInfoMax's loss depends on its running state: settle a fresh state on this batch first
            fresh = CorInfoMaxLoss(cfg.proj_out, cfg.cim_alpha, cfg.cim_la_r, cfg.cim_la_mu, cfg.cim_eps)
            return [fresh(z1, z2) for _ in range(4)][-1].item()

    before = probe()
    obj.start_task(0, 20, 20)
    losses = []
    for _ in range(20):
        loss = obj.ssl_loss(x1, x2, enc(x1), enc(x2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        obj.after_step(enc)
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert probe() < before - 0.05 * abs(before)
    if ssl != "corinfomax":  # its first steps move R away from I, which raises the running loss
        assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05 * abs(np.mean(losses[:3]))
