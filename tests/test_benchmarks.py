"""Benchmark specs and suites: invariants, the reference's values, and that every spec builds without running."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks import ALL_BENCHMARKS, ALL_SUITES, DATASET_CLASSES
from benchmarks.suites import PAPER_METHODS
from cromo_bench.benchmark import BenchmarkSpec, resolve_config
from cromo_bench.config import RunConfig
from cromo_bench.data import make_tasks
from cromo_bench.registry import lookup, names

SPECS = {s.name: s for s in ALL_BENCHMARKS}
REQUIRED = ("digits-5x2", "cifar10-cpu-5x2", "cifar10-2x5", "cifar100-5x20", "cifar100-10x10",
            "tinyimagenet-10x20", "cifar10-offline", "cifar100-offline", "tinyimagenet-offline",
            "confusion-cifar100-cil", "confusion-cifar100-dil", "confusion-digits-cil", "confusion-digits-dil")
REQUIRED_SUITES = ("demo-digits", "paper-cifar10-2x5", "paper-cifar100-5x20", "paper-cifar100-10x10",
                   "paper-tinyimagenet-10x20", "budget-cifar100-5x20", "task-confusion-cifar100",
                   "task-confusion-digits")


def resolve(split: str, ssl: str, method: str = "finetune", **overrides: object) -> RunConfig:
    spec = SPECS[split]
    objective = lookup("objective", ssl)
    return resolve_config(spec, method, ssl, objective_defaults=objective.defaults, overrides=overrides)


def test_names_are_unique_and_registered() -> None:
    assert len(SPECS) == len(ALL_BENCHMARKS)
    assert len({s.name for s in ALL_SUITES}) == len(ALL_SUITES)
    assert set(REQUIRED) <= set(SPECS)
    assert set(REQUIRED_SUITES) <= {s.name for s in ALL_SUITES}
    assert set(names("benchmark")) == set(SPECS)
    assert lookup("suite", "demo-digits").benchmarks == ("digits-5x2",)


@pytest.mark.parametrize("spec", ALL_BENCHMARKS, ids=lambda s: s.name)
def test_spec_invariants(spec: BenchmarkSpec) -> None:
    assert spec.version >= 1 and spec.description
    classes = DATASET_CLASSES.get(spec.dataset, sum(spec.task_sizes))  # folder trees are sized at load time
    assert sum(spec.task_sizes) == classes
    assert spec.epochs[0] >= 1 and spec.epochs[1] >= 1
    assert spec.seeds == (0, 1, 2)
    for values in (spec.defaults, *spec.per_objective.values()):
        if "eval_task_sizes" in values:
            assert sum(values["eval_task_sizes"]) == classes
        if values.get("minibatch", "random") != "random":
            assert spec.defaults.get("eval_task_sizes") or values.get("eval_task_sizes")


def test_specs_and_suites_are_frozen() -> None:
    spec = SPECS["cifar100-10x10"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.defaults["lr"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.per_objective["barlow"]["lr"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALL_SUITES[0].seeds = (9,)  # type: ignore[misc]
    assert SPECS["digits-5x2"].version == 2 and SPECS["digits-5x2"].task_sizes == (2,) * 5


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_suites_name_registered_things(suite: object) -> None:
    benchmarks, objectives = set(names("benchmark")), set(names("objective"))
    methods = set(names("method")) | set(PAPER_METHODS)  # methods may be registered later by their owners
    assert set(suite.benchmarks) <= benchmarks  # type: ignore[attr-defined]
    assert set(suite.objectives) <= objectives  # type: ignore[attr-defined]
    assert set(suite.methods) <= methods  # type: ignore[attr-defined]
    for split in suite.benchmarks:  # type: ignore[attr-defined]
        assert set(suite.objectives) <= set(SPECS[split].per_objective)  # type: ignore[attr-defined]
    if suite.name.startswith("paper-") and suite.name != "paper-offline":  # type: ignore[attr-defined]
        assert suite.methods == PAPER_METHODS and suite.seeds == (0, 1, 2)  # type: ignore[attr-defined]
        assert len(suite.objectives) == 4  # type: ignore[attr-defined]


def test_reference_epochs_and_splits() -> None:
    got = {n: (SPECS[n].task_sizes, SPECS[n].epochs) for n in
           ("cifar10-2x5", "cifar100-5x20", "cifar100-10x10", "tinyimagenet-10x20", "cifar10-offline",
            "cifar100-offline", "tinyimagenet-offline")}
    assert got == {
        "cifar10-2x5": ((5, 5), (500, 500)),
        "cifar100-5x20": ((20,) * 5, (750, 750)),
        "cifar100-10x10": ((10,) * 10, (600, 350)),
        "tinyimagenet-10x20": ((20,) * 10, (500, 350)),
        "cifar10-offline": ((10,), (1000, 1000)),
        "cifar100-offline": ((100,), (1000, 1000)),
        "tinyimagenet-offline": ((200,), (800, 800)),
    }
    assert resolve("cifar10-offline", "barlow").eval_task_sizes == (5, 5)
    assert resolve("cifar100-offline", "barlow").eval_task_sizes == (20,) * 5
    assert resolve("tinyimagenet-offline", "byol").eval_task_sizes == (20,) * 10


@pytest.mark.parametrize(("split", "budgets"), [
    ("cifar10-2x5", {"barlow": 500, "corinfomax": 500, "simclr": 500, "byol": 500}),
    ("cifar100-5x20", {"barlow": 500, "corinfomax": 100, "simclr": 500, "byol": 500}),
    ("cifar100-10x10", {"barlow": 100, "corinfomax": 100, "simclr": 25, "byol": 100}),
    ("tinyimagenet-10x20", {"barlow": 100, "corinfomax": 100, "simclr": 100, "byol": 60}),
])
def test_memory_budgets_per_task(split: str, budgets: dict[str, int]) -> None:
    assert {ssl: resolve(split, ssl).memory for ssl in budgets} == budgets
    assert resolve(split, "barlow").buffer_policy == "per_task"


def test_per_objective_hyperparameters_cifar() -> None:
    bt, cim, sim, byol = (resolve("cifar100-10x10", s) for s in ("barlow", "corinfomax", "simclr", "byol"))
    assert (bt.optimizer, bt.lr, bt.weight_decay, bt.batch_size, bt.proj_out) == ("lars", 0.25, 1e-4, 256, 2048)
    assert (cim.optimizer, cim.lr, cim.proj_hidden, cim.proj_out, cim.cim_alpha) == ("sgd", 0.1, 2048, 64, 250.0)
    assert (sim.lr, sim.batch_size, sim.weight_decay, sim.proj_out, sim.temperature) == (1.2, 512, 5e-4, 128, 0.5)
    assert (byol.lr, byol.weight_decay, byol.proj_out, byol.pred_hidden) == (1.0, 1e-5, 256, 4096)
    assert (byol.warmup_epochs, byol.min_lr, byol.norm, byol.weight_standardization) == (10, 1e-3, "gn", True)
    assert (bt.replay_bs, byol.replay_bs) == (64, 128)
    # LR / 10 on later tasks where the reference omits --same_lr (REFERENCE.md section 10)
    assert {s: resolve("cifar100-10x10", s).later_lr_factor for s in ("barlow", "corinfomax", "simclr", "byol")} \
        == {"barlow": 1.0, "corinfomax": 1.0, "simclr": 0.1, "byol": 0.1}
    assert resolve("cifar10-2x5", "barlow").later_lr_factor == 0.1
    # the paper probe: 200 epochs, lr 0.2, 0.1 for BYOL on CIFAR
    assert (bt.probe_mode, bt.probe_epochs, bt.probe_lr, byol.probe_lr) == ("paper", 200, 0.2, 0.1)
    assert (bt.backbone, bt.width, bt.image_size) == ("resnet18", 64, 32)


def test_per_objective_hyperparameters_tinyimagenet() -> None:
    bt, cim, sim, byol = (resolve("tinyimagenet-10x20", s) for s in ("barlow", "corinfomax", "simclr", "byol"))
    assert (bt.backbone, bt.image_size) == ("resnet50", 64)
    assert (bt.lr, cim.lr, sim.lr, byol.lr) == (0.10, 0.1, 0.3, 0.3)
    assert (cim.proj_hidden, cim.proj_out, cim.cim_alpha) == (4096, 128, 500.0)
    assert (sim.batch_size, sim.proj_out, byol.proj_out) == (256, 2048, 4096)
    assert (byol.weight_decay, byol.min_lr, byol.distill_weight, byol.probe_lr) == (1e-6, 1e-6, 0.0, 0.2)
    assert {s.later_lr_factor for s in (bt, cim, sim, byol)} == {1.0}


def test_confusion_cifar100_values() -> None:
    cil, dil = resolve("confusion-cifar100-cil", "byol"), resolve("confusion-cifar100-dil", "corinfomax")
    assert (cil.minibatch, dil.minibatch) == ("cil", "dil")
    assert cil.task_sizes == (100,) and cil.eval_task_sizes == (10,) * 10 and cil.epochs_first == 1000
    assert (cil.lr, cil.batch_size, cil.warmup_epochs, cil.weight_decay) == (4.0, 1024, 10, 1e-6)
    assert (dil.optimizer, dil.lr, dil.cim_alpha, dil.proj_hidden, dil.norm) == ("sgd", 0.5, 1000.0, 4096, "gn")
    sup = resolve("confusion-cifar100-cil", "supervised")
    assert (sup.lr, sup.batch_size, sup.epochs_first, sup.probe_epochs) == (0.075, 128, 200, 100)


def test_cifar10_cpu_preset_is_small() -> None:
    cfg = resolve("cifar10-cpu-5x2", "barlow")
    assert cfg.dataset == "cifar10" and cfg.task_sizes == (2,) * 5
    assert 8 <= cfg.width <= 16 and cfg.subset_per_class == 500 and cfg.epochs_first <= 20


@pytest.mark.parametrize("spec", ALL_BENCHMARKS, ids=lambda s: s.name)
def test_every_spec_builds_its_split_and_model(spec: BenchmarkSpec) -> None:
    """Every registered objective of the spec: the resolved config, the task split and the model (narrow)."""
    from cromo_bench.models import Encoder, build_backbone

    classes = DATASET_CLASSES.get(spec.dataset, sum(spec.task_sizes))  # folder trees are sized at load time
    for ssl in spec.per_objective:
        objective_cls = lookup("objective", ssl)
        cfg = resolve(spec.name, ssl, width=4)
        tasks = make_tasks(classes, cfg.task_sizes, cfg.class_order_seed)
        assert sorted(c for t in tasks for c in t) == list(range(classes))
        if cfg.eval_task_sizes:
            assert len(make_tasks(classes, cfg.eval_task_sizes, cfg.class_order_seed)) == len(cfg.eval_task_sizes)
        backbone, feat_dim = build_backbone(cfg)
        assert feat_dim == (8 if cfg.backbone == "resnet18" else 32) * 4
        objective = objective_cls(cfg, feat_dim)
        encoder = Encoder(backbone, objective.build_projector())
        objective.attach(encoder)
        assert sum(p.numel() for p in encoder.parameters()) > 0


def test_full_width_backbones_once() -> None:
    from cromo_bench.models import build_backbone

    _, dim18 = build_backbone(resolve("cifar100-10x10", "barlow"))
    _, dim50 = build_backbone(resolve("tinyimagenet-10x20", "barlow"))
    assert (dim18, dim50) == (512, 2048)  # REFERENCE.md 2.1: 512-d CIFAR ResNet-18, 2048-d ResNet-50 variant
