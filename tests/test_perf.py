"""The fast training step computes what the plain step computes; the perf harness runs (issue 8).

Correctness only: no timing assertions. CUDA-only tests (bf16 autocast, channels_last, samplers on the host)
run where a GPU exists (scripts/gpu_perf_check.sh runs them).
"""

from __future__ import annotations

import copy
import dataclasses
from functools import cache
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cromo_bench.augment import TwoViewAugment
from cromo_bench.cli import app
from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData, load_digits
from cromo_bench.experiment import build_config
from cromo_bench.method import Step
from cromo_bench.models import Encoder
from cromo_bench.parts import FrozenEncoder, freeze_copy, make_replay, set_memory_format
from cromo_bench.perf import Bench, benchmark_steps, synthetic_data
from cromo_bench.registry import lookup, names
from cromo_bench.tracking import MemoryTracker
from cromo_bench.train import Trainer
from tests.helpers import TINY_SETS

runner = CliRunner()
PAIRS = [(m, s) for m in names("method") for s in names("objective")
         if not getattr(lookup("objective", s), "uses_labels", False) or m == "finetune"]


@cache
def digits() -> ImageData:
    return load_digits(16).subset_per_class(24)


def tiny_cfg(method: str, ssl: str, run_dir: Path, **kw: object) -> RunConfig:
    sets = TINY_SETS + [f"run_dir={run_dir}", "device=cpu"] + [f"{k}={v}" for k, v in kw.items()]
    return build_config(method, ssl, "digits-5x2", sets=sets)


def trainer_at_task_2(cfg: RunConfig) -> Trainer:
    """A trainer past task 1's boundary (old encoder frozen, buffer filled), ready for task 2."""
    t = Trainer(cfg, MemoryTracker(), digits(), progress=False)
    t.carry_over(0)
    t.begin_task(1, resumed=False)
    return t


def plain_step(t: Trainer, task: int, sel: torch.Tensor) -> dict[str, torch.Tensor]:
    """The step as the loop did it before issue 8: module calls in fp32, a plain deep-copied old encoder."""
    p = t.parts
    assert t.optimizer is not None
    old = None
    if p.old_encoder is not None:
        old = Encoder(copy.deepcopy(p.old_encoder.backbone), copy.deepcopy(p.old_encoder.projector))
        old.requires_grad_(False)
        old.train(p.old_encoder.training)
    buffer = p.buffer
    replay = (lambda n: p.augment(buffer.sample(n, t.generator))) if buffer is not None and len(buffer) else None
    x1, x2 = p.augment(t.train_x[sel])
    terms = p.method.loss_terms(Step(x1, x2, task, p.encoder, p.objective, old, replay, t.generator,
                                     t.train_y[sel]))
    loss = torch.stack(list(terms.values())).sum()
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    t.optimizer.step()
    p.objective.after_step(p.encoder)
    if old is not None:  # the old model's BatchNorm statistics moved in the plain copy; keep them
        p.old_encoder.load_state_dict(old.state_dict())  # type: ignore[union-attr]
    return terms


def first_batch(t: Trainer) -> torch.Tensor:
    idx = t.task_idx[1]
    return idx[: t.cfg.batch_size]


@pytest.mark.parametrize(("method", "ssl"), PAIRS)
def test_fast_step_equals_the_plain_step_on_the_cpu(method, ssl, tmp_path):
    cfg = tiny_cfg(method, ssl, tmp_path)
    fast, plain = trainer_at_task_2(cfg), trainer_at_task_2(cfg)
    assert fast.amp is False and fast.memory_format == torch.contiguous_format  # CPU: fp32, NCHW
    if fast.parts.old_encoder is not None:
        assert isinstance(fast.parts.old_encoder, FrozenEncoder)
    for _ in range(2):  # two steps: the second starts from the first one's update
        torch.manual_seed(7)
        got = fast.step(1, first_batch(fast), fast.replay())
        torch.manual_seed(7)
        want = plain_step(plain, 1, first_batch(plain))
        assert set(got) == set(want)
        for k in got:
            torch.testing.assert_close(got[k], want[k])
    for a, b in zip(fast.parts.encoder.parameters(), plain.parts.encoder.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("ssl", [s for s in names("objective") if s != "supervised"])
def test_the_cuda_settings_run_on_the_cpu_too(ssl, tmp_path):
    """bf16 autocast + channels_last (the CUDA path) on the CPU: every objective runs, the losses stay finite
    and near the fp32 ones, and augmentation stays float32 even when replay is called under autocast."""
    cfg = tiny_cfg("cromo", ssl, tmp_path)
    fast, plain = trainer_at_task_2(cfg), trainer_at_task_2(cfg)
    fast.amp, fast.memory_format = True, torch.channels_last
    set_memory_format(fast.parts, torch.channels_last)
    replay = fast.replay()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b1, b2 = replay(4)
    assert b1.dtype == b2.dtype == torch.float32 and b1.is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    got = fast.step(1, first_batch(fast), fast.replay())
    torch.manual_seed(3)
    want = plain_step(plain, 1, first_batch(plain))
    for k, v in got.items():
        assert torch.isfinite(v).all(), k
        a, b = float(v.detach()), float(want[k].detach())
        assert abs(a - b) <= 0.1 * abs(b) + 0.1, (k, a, b)


def test_frozen_encoder_is_the_encoder_under_inference_mode(tmp_path):
    cfg = tiny_cfg("cromo", "barlow", tmp_path)
    t = Trainer(cfg, MemoryTracker(), digits(), progress=False)
    enc = t.parts.encoder
    old = freeze_copy(enc, "eval")
    plain = copy.deepcopy(enc).eval()
    assert old.state_dict().keys() == enc.state_dict().keys()
    assert all(not p.requires_grad for p in old.parameters())
    x = torch.randn(6, 3, 16, 16)
    z = old(x)
    assert not z.is_inference() and not z.requires_grad
    torch.testing.assert_close(z, plain(x).detach())
    w = torch.randn(z.shape[1], requires_grad=True)
    torch.nn.functional.cosine_similarity(z, w.expand_as(z), dim=1).sum().backward()  # usable in a loss
    assert w.grad is not None


def test_replayed_identical_images_get_independent_views(tmp_path):
    """The replay path draws per-sample parameters too: a buffer of one repeated image gives distinct views."""
    cfg = tiny_cfg("cromo", "barlow", tmp_path)
    t = Trainer(cfg, MemoryTracker(), digits(), progress=False)
    buffer = t.parts.buffer
    assert buffer is not None
    img = digits().train_x[:1].repeat(cfg.memory, 1, 1, 1)  # (M, C, H, W), all equal
    buffer.add_task(img, torch.zeros(cfg.memory, dtype=torch.long), 0, t.generator)
    torch.manual_seed(0)
    b1, b2 = make_replay(t.parts, t.generator)(16)
    for v in (b1, b2):
        rows = {tuple(r.tolist()) for r in v.flatten(1).mul(1e4).round()}
        assert len(rows) >= 15  # one shared crop per batch would give a single row
    assert (b1 - b2).flatten(1).abs().amax(1).min() > 0


def test_kornia_samplers_stay_on_the_host_when_the_module_moves():
    aug = TwoViewAugment("barlow", 16, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)).to(torch.float64)
    assert aug.mean.dtype == torch.float64  # the module moved ...
    samplers = [m for m in aug.modules() if hasattr(m, "set_rng_device_and_dtype")]
    assert samplers and all((m.device, m.dtype) == (torch.device("cpu"), torch.float32) for m in samplers)


def test_reference_style_copy_computes_the_same_losses(tmp_path):
    cfg = tiny_cfg("cromo", "barlow", tmp_path)
    bench = Bench(cfg, synthetic_data(cfg), ref_workers=0)
    t, ref = bench.trainer, bench.ref
    views = bench.fixed_replay(cfg.replay_bs)
    y = t.train_y[bench.sel[0]]
    mine = t.parts.method.loss_terms(t.make_step(1, bench.x1, bench.x2, lambda n: views, y))
    theirs = ref.method.loss_terms(Step(bench.x1, bench.x2, 1, ref.encoder, ref.objective, ref.old_encoder,
                                        lambda n: views, torch.Generator().manual_seed(0), y))
    for k in mine:
        torch.testing.assert_close(mine[k], theirs[k])
    b1, b2 = bench.reference_replay(5)  # the one-at-a-time loop: normalised views of the buffer images
    assert b1.shape == b2.shape == (5, 3, 16, 16) and not torch.equal(b1, b2)


def test_benchmark_steps_follow_the_spec():
    cfg = build_config("cromo", "barlow", "cifar100-10x10", sets=["width=8"])
    total, text = benchmark_steps(cfg)
    assert total == 20 * (600 + 9 * 350)  # 5000 images per task -> 19 full batches + one of 136
    assert "75000 steps" in text
    data = synthetic_data(cfg)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape[1:] == (3, 32, 32)
    assert data.num_classes == 100


def test_perf_command_prints_every_figure(tmp_cwd):
    sets = [a for s in TINY_SETS for a in ("--set", s)]
    res = runner.invoke(app, ["perf", "--method", "cromo", "--ssl", "barlow", "--split", "digits-5x2",
                              "--steps", "2", "--repeats", "1", "--device", "cpu", *sets])
    assert res.exit_code == 0, res.output
    for field in ("images/s", "steps/s", "compute floor", "reference-style pipeline", "overhead (step / floor)",
                  "speed-up (reference / step)", "augmentation, current + replay", "replay augmentation",
                  "FLOPs per step", "GFLOP/s", "estimated training time", "task 2 of 5"):
        assert field in res.output, field


def test_perf_command_reports_bad_names(tmp_cwd):
    res = runner.invoke(app, ["perf", "--method", "cromoo", "--split", "digits-5x2", "--steps", "1"])
    assert res.exit_code == 2 and "cromo" in res.output


@pytest.mark.slow
def test_compiled_step_equals_the_eager_step(tmp_path):
    cfg = tiny_cfg("cromo", "barlow", tmp_path)
    eager, compiled = trainer_at_task_2(cfg), trainer_at_task_2(dataclasses.replace(cfg, compile=True))
    torch.manual_seed(5)
    want = eager.step(1, first_batch(eager), eager.replay())
    torch.manual_seed(5)
    got = compiled.step(1, first_batch(compiled), compiled.replay())
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("method", "ssl"), PAIRS)
def test_cuda_step_runs_in_bf16_channels_last_and_tracks_fp32(method, ssl, tmp_path):
    cfg = tiny_cfg(method, ssl, tmp_path, device="cuda")
    t = trainer_at_task_2(cfg)
    assert t.amp and t.memory_format == torch.channels_last and torch.backends.cudnn.benchmark
    conv = next(m for m in t.parts.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    samplers = [m for m in t.parts.augment.modules() if hasattr(m, "set_rng_device_and_dtype")]
    assert all(m.device == torch.device("cpu") for m in samplers)
    plain = trainer_at_task_2(cfg)
    plain.amp, plain.memory_format = False, torch.contiguous_format
    set_memory_format(plain.parts, torch.contiguous_format)
    torch.manual_seed(11)
    got = t.step(1, first_batch(t), t.replay())
    torch.manual_seed(11)
    want = plain.step(1, first_batch(plain), plain.replay())
    for k, v in got.items():
        assert torch.isfinite(v).all(), k
        a, b = float(v.detach()), float(want[k].detach())
        assert abs(a - b) <= 0.1 * abs(b) + 0.1, (k, a, b)


def test_compile_wraps_full_batches_only(tmp_path):
    """With --compile the short last batch of an epoch runs eagerly: no recompilation for a second shape."""
    t = trainer_at_task_2(tiny_cfg("cromo", "barlow", tmp_path, compile=True))
    enc, b = t.parts.encoder, t.cfg.batch_size
    assert t._run(enc, b) is not enc and t._run(enc, b) is t._run(enc, b)  # one wrapper, reused
    assert t._run(enc, b - 1) is enc
    x = torch.zeros(b - 1, 3, 16, 16)
    step = t.make_step(1, x, x, None)
    assert step.encoder is enc and step.old_encoder is t.parts.old_encoder


@pytest.mark.slow
def test_compiled_cpu_run_with_a_short_last_batch_finishes(tmp_cwd):
    """digits-5x2 epochs end with a 15-image batch; compiling that second shape crashed inductor on the CPU."""
    res = runner.invoke(app, ["run", "--method", "finetune", "--ssl", "barlow", "--split", "digits-5x2",
                              "--epochs", "1", "--compile", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "LA " in res.output
