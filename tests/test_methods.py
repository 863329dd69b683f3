"""Every registered method x objective across a task boundary, with the real trainer pieces
(build_parts, freeze_copy, make_replay, trainable_parameters): term names, finiteness, where gradients go,
the frozen old model; plus composition (ER = finetune on [current; replay], CaSSLe+ = CaSSLe on it), presets
and one CLI run."""

from __future__ import annotations

import copy
import dataclasses
from functools import cache
from typing import Any

import pytest
import torch

from cromo_bench.config import RunConfig
from cromo_bench.data import ImageData, load_digits, make_tasks, task_indices
from cromo_bench.errors import CromoError
from cromo_bench.method import Step
from cromo_bench.parts import Parts, build_parts, freeze_copy, make_replay, trainable_parameters
from cromo_bench.registry import lookup, names

#: Expected term names (task 0, later tasks). A method missing here must still give "ssl" and no
#: continual term on task 0.
EXPECTED = {
    "finetune": ({"ssl"}, {"ssl"}),
    "er": ({"ssl"}, {"ssl"}),
    "cassle": ({"ssl"}, {"ssl", "distill"}),
    "cassle_plus": ({"ssl"}, {"ssl", "distill"}),
    "cromo": ({"ssl"}, {"ssl", "distill", "cromo"}),
    "cromo_nodistill": ({"ssl"}, {"ssl", "cromo"}),
}
CONTINUAL_TERMS = {"distill", "cromo", "replay"}


def tiny_cfg(method: str, ssl: str, **kw: object) -> RunConfig:
    values = dict(method=method, ssl=ssl, width=4, image_size=16, proj_hidden=32, proj_out=32, pred_hidden=32,
                  distill_hidden=32, batch_size=8, replay_bs=4, memory=6, task_sizes=(2, 2, 2, 2, 2),
                  device="cpu")
    values |= getattr(lookup("method", method), "defaults", {})
    values |= kw
    return RunConfig(**values)  # type: ignore[arg-type]


@cache
def digits() -> ImageData:
    return load_digits(16).subset_per_class(8)


def task_batch(data: ImageData, task: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = task_indices(data.train_y, make_tasks(10, (2, 2, 2, 2, 2))[task])
    return data.train_x[idx], data.train_y[idx]


def grads_of(module: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: p.grad for n, p in module.named_parameters() if p.requires_grad}


def take_step(parts: Parts, task: int, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
              replay: object) -> dict[str, torch.Tensor]:
    x1, x2 = parts.augment(x[:8])
    step = Step(x1, x2, task, parts.encoder, parts.objective, parts.old_encoder, replay, gen, y[:8])  # type: ignore[arg-type]
    terms = parts.method.loss_terms(step)
    loss = torch.stack(list(terms.values())).sum()
    loss.backward()
    return terms


def check_terms(method: str, task: int, terms: dict[str, torch.Tensor]) -> None:
    if method in EXPECTED:
        assert set(terms) == EXPECTED[method][task > 0], f"{method} task {task}: {sorted(terms)}"
    else:
        assert "ssl" in terms and (task > 0 or not CONTINUAL_TERMS & set(terms))
    for name, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), f"term {name} = {value}"


def check_grads(parts: Parts, terms: dict[str, torch.Tensor]) -> None:
    for scope in (parts.encoder, parts.objective):
        for name, g in grads_of(scope).items():
            assert g is not None, f"no gradient for {name}"
            assert torch.isfinite(g).all(), f"non-finite gradient for {name}"
    assert any(float(g.abs().sum()) > 0 for g in grads_of(parts.encoder.backbone).values() if g is not None)
    shared = {id(p) for p in parts.objective.parameters()}
    method_grads = {n: p.grad for n, p in parts.method.named_parameters()
                    if p.requires_grad and id(p) not in shared}
    for name, g in method_grads.items():  # the temporal projector g: trained exactly when "distill" exists
        if "distill" in terms:
            assert g is not None and torch.isfinite(g).all(), f"no gradient for method part {name}"
        else:
            assert g is None, f"{name} got a gradient without a distillation term"
    if "distill" in terms:
        assert method_grads and any(float(g.abs().sum()) > 0 for g in method_grads.values() if g is not None)


@pytest.mark.parametrize("ssl", names("objective"))
@pytest.mark.parametrize("method", names("method"))
def test_method_across_a_task_boundary(method, ssl):
    torch.manual_seed(0)
    data = digits()
    cfg = tiny_cfg(method, ssl)
    method_cls = lookup("method", method)
    labelled = lookup("objective", ssl).uses_labels  # the supervised reference: finetune only
    if labelled and method != "finetune":
        with pytest.raises(CromoError, match="finetune"):
            build_parts(cfg, data, torch.device("cpu"))
        return
    parts = build_parts(cfg, data, torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    opt = torch.optim.SGD([p for _, p in trainable_parameters(parts)], lr=0.05)
    assert (parts.buffer is not None) == method_cls.needs_buffer

    # task 0: no old model, no buffer
    parts.objective.start_task(0, 1, 2)
    x, y = task_batch(data, 0)
    terms = take_step(parts, 0, x, y, gen, None)
    check_terms(method, 0, terms)
    check_grads(parts, terms)
    opt.step()
    parts.objective.after_step(parts.encoder)
    opt.zero_grad(set_to_none=True)

    # boundary, as the trainer does it
    if method_cls.needs_old_model:
        parts.old_encoder = freeze_copy(parts.encoder, cfg.old_model_bn)
    if parts.buffer is not None:
        parts.buffer.add_task(x, y, 0, gen)
        assert len(parts.buffer) == cfg.memory
    calls: list[int] = []
    replay = None
    if parts.buffer is not None:
        inner = make_replay(parts, gen)

        def replay(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            calls.append(n)
            return inner(n)

    # task 1
    parts.objective.start_task(1, 1, 2)
    x, y = task_batch(data, 1)
    old_before = copy.deepcopy(parts.old_encoder.state_dict()) if parts.old_encoder is not None else None
    new_before = [p.detach().clone() for p in parts.encoder.parameters()]
    terms = take_step(parts, 1, x, y, gen, replay)
    check_terms(method, 1, terms)
    check_grads(parts, terms)
    if method_cls.needs_buffer:
        assert calls and all(0 < n <= cfg.replay_bs for n in calls), f"replay calls {calls}"
    if parts.old_encoder is not None:
        for name, p in parts.old_encoder.named_parameters():
            assert not p.requires_grad and p.grad is None, f"old model parameter {name} got a gradient"
    opt.step()
    parts.objective.after_step(parts.encoder)
    after = list(parts.encoder.parameters())
    assert any(not torch.equal(a, b.detach()) for a, b in zip(new_before, after, strict=True))
    if parts.old_encoder is not None and old_before is not None:
        for name, p in parts.old_encoder.named_parameters():
            assert torch.equal(p, old_before[name]), f"old model parameter {name} changed"


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_old_model_batchnorm_mode(bn_mode):
    """eval: the old model is fully frozen (buffers too); train (the reference): its BN statistics move."""
    torch.manual_seed(0)
    data = digits()
    cfg = tiny_cfg("cromo", "barlow", old_model_bn=bn_mode)
    parts = build_parts(cfg, data, torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    x, y = task_batch(data, 0)
    parts.old_encoder = freeze_copy(parts.encoder, cfg.old_model_bn)
    assert parts.buffer is not None
    parts.buffer.add_task(x, y, 0, gen)
    before = copy.deepcopy(parts.old_encoder.state_dict())
    x, y = task_batch(data, 1)
    take_step(parts, 1, x, y, gen, make_replay(parts, gen))
    after = parts.old_encoder.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if bn_mode == "eval":
        assert changed == []
    else:
        assert changed and all("running" in k or "num_batches" in k for k in changed)


# --- composition --------------------------------------------------------------------------------------------


def fixed_views(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randn(n, 3, 16, 16, generator=g)


def fixed_replay(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    b1, b2 = fixed_views(99, 16)
    return b1[:n], b2[:n]


@pytest.mark.parametrize(("method", "inner"), [("er", "finetune"), ("cassle_plus", "cassle")])
@pytest.mark.parametrize("ssl", ["barlow", "simclr"])
def test_replay_methods_equal_their_inner_method_on_the_concatenated_batch(method, inner, ssl):
    torch.manual_seed(0)
    cfg = tiny_cfg(method, ssl)
    parts = build_parts(cfg, digits(), torch.device("cpu"))
    outer: Any = parts.method
    other = lookup("method", inner)(cfg, parts.objective)
    if inner == "cassle":
        other.load_state_dict(outer.cassle.state_dict())  # the same g
    old = freeze_copy(parts.encoder, "train")
    x1, x2 = fixed_views(0, 8)
    b1, b2 = fixed_replay(cfg.replay_bs)
    step = Step(x1, x2, 1, parts.encoder, parts.objective, old, fixed_replay, torch.Generator())
    joint = Step(torch.cat([x1, b1]), torch.cat([x2, b2]), 1, parts.encoder, parts.objective, old, None,
                 torch.Generator())
    got, want = outer.loss_terms(step), other.loss_terms(joint)
    plain = other.loss_terms(dataclasses.replace(step, replay=None))
    assert set(got) == set(want)
    for k in got:
        torch.testing.assert_close(got[k], want[k])
    assert not torch.allclose(got["ssl"], plain["ssl"])  # the replayed samples do change the loss


@pytest.mark.parametrize("method", ["cassle", "cassle_plus", "cromo"])
def test_zero_distill_weight_drops_the_term(method):
    cfg = tiny_cfg(method, "barlow", distill_weight=0.0)
    parts = build_parts(cfg, digits(), torch.device("cpu"))
    old = freeze_copy(parts.encoder, "train")
    x1, x2 = fixed_views(0, 8)
    gen = torch.Generator().manual_seed(0)
    terms = parts.method.loss_terms(Step(x1, x2, 1, parts.encoder, parts.objective, old, fixed_replay, gen))
    assert "distill" not in terms and "ssl" in terms
    assert ("cromo" in terms) == (method == "cromo")


def test_cromo_needs_a_buffer():
    with pytest.raises(CromoError, match="memory > 0"):
        build_parts(tiny_cfg("cromo", "barlow", memory=0), digits(), torch.device("cpu"))


# --- presets and the command line ---------------------------------------------------------------------------


def test_presets_resolve_with_the_documented_precedence():
    from cromo_bench.experiment import build_config
    from cromo_bench.presets import preset_values

    ref = build_config("cromo", "corinfomax", "digits-5x2", preset="reference")
    assert (ref.cromo_loss, ref.detach_current_target, ref.old_model_bn) == ("bt", False, "train")
    assert ("preset", "reference") in ref.extra
    barlow = build_config("cromo", "barlow", "digits-5x2", preset="reference")
    assert (barlow.lambda_mode, barlow.mix_lambda) == ("fixed", 0.7)
    clean = build_config("cromo", "barlow", "digits-5x2", preset="clean")
    assert (clean.lambda_mode, clean.detach_current_target, clean.cromo_loss) == ("beta", True, "native")
    assert build_config("er", "barlow", "digits-5x2", preset="reference").buffer_replacement is False
    # method defaults win over the preset; --set wins over both
    assert build_config("cromo_nodistill", "corinfomax", "digits-5x2", preset="reference").distill_weight == 0
    assert build_config("cromo", "corinfomax", "digits-5x2", preset="reference",
                        sets=["detach_current_target=true"]).detach_current_target is True
    assert preset_values("reference", "byol", "cassle")["ema_schedule"] == "task"
    assert preset_values("reference", "byol", "er")["warmup_epochs"] == 0
    assert "warmup_epochs" not in preset_values("reference", "byol", "cromo")
    assert preset_values("reference", "corinfomax", "finetune")["cim_la_r"] == 0.1
    # a preset never touches a benchmark's sizes or schedule
    sizes = {"replay_bs", "memory", "batch_size", "lr", "later_lr_factor", "epochs_first", "epochs_later"}
    for ssl in ("barlow", "corinfomax", "simclr", "byol"):
        for method in ("finetune", "er", "cassle", "cassle_plus", "cromo"):
            assert not sizes & set(preset_values("reference", ssl, method))
    with pytest.raises(CromoError, match="Did you mean 'reference'"):
        preset_values("refrence", "barlow")


def test_cli_run_cromo_logs_every_term(tmp_cwd):
    from typer.testing import CliRunner

    from cromo_bench.cli import app
    from cromo_bench.tracking import load_runs

    uri = f"sqlite:///{tmp_cwd}/mlflow.db"
    args = ["run", "--method", "cromo", "--ssl", "barlow", "--split", "digits-5x2", "--epochs", "1",
            "--tracking-uri", uri, "--device", "cpu", "--quiet", "--preset", "reference"]
    for s in ("width=4", "subset_per_class=12", "proj_hidden=32", "proj_out=32", "distill_hidden=32",
              "batch_size=12", "replay_bs=6", "memory=8", "probe_epochs=2", "eval_every_task=false"):
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = load_runs(uri)
    assert len(runs) == 1 and runs.loc[0, "method"] == "cromo" and runs.loc[0, "status"] == "FINISHED"
    for metric in ("loss_ssl", "loss_cromo", "loss_distill", "LA", "TP"):
        assert metric in runs.columns and runs.loc[0, metric] == runs.loc[0, metric], metric
