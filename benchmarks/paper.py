"""The reference's settings (REFERENCE.md sections 1, 4, 10, 11) as frozen benchmark specs.

Every value that changes the numbers is written out here, per objective, instead of relying on the objectives'
defaults: a spec is the one named place a reproducer reads. Quirks of the reference *methods* (fixed λ for
Barlow's mixup, the BT-based CroMo term for CorInfoMax, ...) stay method options (ARCHITECTURE.md).

- Splits (1.1): CIFAR-10 2x5 (500 / 500 epochs), CIFAR-100 5x20 (750 each), CIFAR-100 10x10 (600, then 350),
  TinyImageNet 10x20 (500, then 350; ResNet-50 variant, 64x64). Natural class order (1.2).
- Offline upper bounds (1.1, 9): one task with every class, 1000 epochs (CIFAR) / 800 (TinyImageNet),
  TP / WP measured on the standard split through `eval_task_sizes`.
- Per-objective optimisation (10): LARS / SGD, LR, weight decay, batch size, projector dims, CorInfoMax α,
  replay batch, LR ÷10 on later tasks where the reference omits `--same_lr`, BYOL's 10-epoch warmup from
  min_lr and GroupNorm + weight standardisation, KD weight 0 for BYOL on TinyImageNet.
- Memory (4): `memory` is msize per task (buffer_policy per_task, drawn with replacement).
- Probe (11.1): the paper protocol, 200 epochs, batch 256, lr 0.2 (0.1 for BYOL on CIFAR).
- Seeds 0, 1, 2 (the reference does not seed; 1.4).
"""

from __future__ import annotations

from typing import Any

from cromo_bench.benchmark import BenchmarkSpec

OBJECTIVES = ("barlow", "corinfomax", "simclr", "byol")

# --- REFERENCE.md section 10, CIFAR columns --------------------------------------------------------------
_CIFAR: dict[str, dict[str, Any]] = {
    "barlow": {
        "optimizer": "lars", "lr": 0.25, "weight_decay": 1e-4, "batch_size": 256,
        "proj_hidden": 2048, "proj_out": 2048, "distill_hidden": 2048,
        "norm": "bn", "weight_standardization": False, "warmup_epochs": 0, "min_lr": 0.0,
        "bt_lambda": 5e-3, "bt_scale": 0.1, "replay_bs": 64, "distill_weight": 1.0,
    },
    "corinfomax": {
        "optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4, "batch_size": 256,
        "proj_hidden": 2048, "proj_out": 64, "distill_hidden": 2048,
        "norm": "bn", "weight_standardization": False, "warmup_epochs": 0, "min_lr": 0.0,
        "cim_alpha": 250.0, "cim_la_r": 0.01, "cim_la_mu": 0.01, "cim_eps": 1e-8,
        "later_lr_factor": 1.0, "replay_bs": 64, "distill_weight": 1.0,
    },
    "simclr": {
        "optimizer": "lars", "lr": 1.2, "weight_decay": 5e-4, "batch_size": 512,  # 0.6 * 512 / 256
        "proj_hidden": 2048, "proj_out": 128, "distill_hidden": 2048,
        "norm": "bn", "weight_standardization": False, "warmup_epochs": 0, "min_lr": 0.0,
        "temperature": 0.5, "later_lr_factor": 0.1, "replay_bs": 64, "distill_weight": 1.0,
    },
    "byol": {
        "optimizer": "lars", "lr": 1.0, "weight_decay": 1e-5, "batch_size": 256,
        "proj_hidden": 4096, "proj_out": 256, "pred_hidden": 4096, "distill_hidden": 4096,
        "norm": "gn", "weight_standardization": True, "warmup_epochs": 10, "min_lr": 1e-3,
        "ema_base": 0.99, "later_lr_factor": 0.1, "replay_bs": 128, "distill_weight": 1.0,
    },
}

# --- REFERENCE.md section 10, TinyImageNet values ----------------------------------------------------------
_TINY: dict[str, dict[str, Any]] = {
    "barlow": _CIFAR["barlow"] | {"lr": 0.10, "later_lr_factor": 1.0},
    "corinfomax": _CIFAR["corinfomax"] | {"proj_hidden": 4096, "proj_out": 128, "distill_hidden": 4096,
                                          "cim_alpha": 500.0},
    "simclr": _CIFAR["simclr"] | {"lr": 0.3, "batch_size": 256, "proj_out": 2048, "later_lr_factor": 1.0},
    "byol": _CIFAR["byol"] | {"lr": 0.3, "weight_decay": 1e-6, "proj_out": 4096, "min_lr": 1e-6,
                              "later_lr_factor": 1.0, "distill_weight": 0.0},
}

# --- REFERENCE.md section 4: msize per task ---------------------------------------------------------------
MEMORY: dict[str, dict[str, int]] = {
    "cifar10-2x5": {"barlow": 500, "corinfomax": 500, "simclr": 500, "byol": 500},
    "cifar100-5x20": {"barlow": 500, "corinfomax": 100, "simclr": 500, "byol": 500},
    "cifar100-10x10": {"barlow": 100, "corinfomax": 100, "simclr": 25, "byol": 100},
    "tinyimagenet-10x20": {"barlow": 100, "corinfomax": 100, "simclr": 100, "byol": 60},
}

# --- REFERENCE.md section 11.1: the final probe -------------------------------------------------------------
_PROBE = {"probe_mode": "paper", "probe_epochs": 200, "probe_lr": 0.2, "probe_batch_size": 256, "knn_k": 200}
_BUFFER = {"buffer_policy": "per_task", "buffer_replacement": True}
_CIFAR_MODEL = {"backbone": "resnet18", "width": 64, "image_size": 32}
_TINY_MODEL = {"backbone": "resnet50", "width": 64, "image_size": 64}


def _per_objective(table: dict[str, dict[str, Any]], *, memory: dict[str, int] | None = None,
                   later_lr: dict[str, float] | None = None, probe_lr: dict[str, float] | None = None,
                   ) -> dict[str, dict[str, Any]]:
    out = {}
    for ssl, values in table.items():
        row = dict(values)
        row["memory"] = memory[ssl] if memory else 0
        if later_lr and ssl in later_lr:
            row["later_lr_factor"] = later_lr[ssl]
        if probe_lr and ssl in probe_lr:
            row["probe_lr"] = probe_lr[ssl]
        out[ssl] = row
    return out


_CIFAR_PROBE_LR = {"byol": 0.1}  # 11.1: 0.1 for BYOL on CIFAR; 0.2 for everything on TinyImageNet

CIFAR10_2X5 = BenchmarkSpec(
    name="cifar10-2x5",
    version=2,
    description="CIFAR-10, 2 tasks x 5 classes, 500 + 500 epochs, ResNet-18 (CIFAR stem), msize 500 per task",
    dataset="cifar10",
    task_sizes=(5, 5),
    epochs=(500, 500),
    defaults=_CIFAR_MODEL | _PROBE | _BUFFER,
    # LR ÷10 on task 2 for Barlow too on CIFAR-10 (the reference omits --same_lr there only)
    per_objective=_per_objective(_CIFAR, memory=MEMORY["cifar10-2x5"], later_lr={"barlow": 0.1},
                                 probe_lr=_CIFAR_PROBE_LR),
)

CIFAR100_5X20 = BenchmarkSpec(
    name="cifar100-5x20",
    version=2,
    description="CIFAR-100, 5 tasks x 20 classes, 750 epochs each, ResNet-18 (CIFAR stem)",
    dataset="cifar100",
    task_sizes=(20,) * 5,
    epochs=(750, 750),
    defaults=_CIFAR_MODEL | _PROBE | _BUFFER,
    per_objective=_per_objective(_CIFAR, memory=MEMORY["cifar100-5x20"], later_lr={"barlow": 1.0},
                                 probe_lr=_CIFAR_PROBE_LR),
)

CIFAR100_10X10 = BenchmarkSpec(
    name="cifar100-10x10",
    version=2,
    description="CIFAR-100, 10 tasks x 10 classes, 600 epochs on task 1 then 350, ResNet-18 (CIFAR stem)",
    dataset="cifar100",
    task_sizes=(10,) * 10,
    epochs=(600, 350),
    defaults=_CIFAR_MODEL | _PROBE | _BUFFER,
    per_objective=_per_objective(_CIFAR, memory=MEMORY["cifar100-10x10"], later_lr={"barlow": 1.0},
                                 probe_lr=_CIFAR_PROBE_LR),
)

TINYIMAGENET_10X20 = BenchmarkSpec(
    name="tinyimagenet-10x20",
    version=2,
    description="TinyImageNet (64x64), 10 tasks x 20 classes, 500 epochs on task 1 then 350, the reference's "
                "ResNet-50 variant (7x7 stride-2 stem, no max-pool)",
    dataset="tinyimagenet",
    task_sizes=(20,) * 10,
    epochs=(500, 350),
    defaults=_TINY_MODEL | _PROBE | _BUFFER,
    per_objective=_per_objective(_TINY, memory=MEMORY["tinyimagenet-10x20"]),
)

CIFAR10_OFFLINE = BenchmarkSpec(
    name="cifar10-offline",
    version=2,
    description="CIFAR-10 offline upper bound: one task of 10 classes, 1000 epochs; TP/WP on 2x5",
    dataset="cifar10",
    task_sizes=(10,),
    epochs=(1000, 1000),
    defaults=_CIFAR_MODEL | _PROBE | {"eval_task_sizes": (5, 5)},
    per_objective=_per_objective(_CIFAR, probe_lr=_CIFAR_PROBE_LR),
)

CIFAR100_OFFLINE = BenchmarkSpec(
    name="cifar100-offline",
    version=2,
    description="CIFAR-100 offline upper bound: one task of 100 classes, 1000 epochs; TP/WP on 5x20",
    dataset="cifar100",
    task_sizes=(100,),
    epochs=(1000, 1000),
    defaults=_CIFAR_MODEL | _PROBE | {"eval_task_sizes": (20,) * 5},
    per_objective=_per_objective(_CIFAR, probe_lr=_CIFAR_PROBE_LR),
)

TINYIMAGENET_OFFLINE = BenchmarkSpec(
    name="tinyimagenet-offline",
    version=2,
    description="TinyImageNet offline upper bound: one task of 200 classes, 800 epochs; TP/WP on 10x20",
    dataset="tinyimagenet",
    task_sizes=(200,),
    epochs=(800, 800),
    defaults=_TINY_MODEL | _PROBE | {"eval_task_sizes": (20,) * 10},
    per_objective=_per_objective(_TINY),
)

PAPER_BENCHMARKS = (CIFAR10_2X5, CIFAR100_5X20, CIFAR100_10X10, TINYIMAGENET_10X20,
                    CIFAR10_OFFLINE, CIFAR100_OFFLINE, TINYIMAGENET_OFFLINE)
