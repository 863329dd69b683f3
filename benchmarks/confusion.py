"""The task-confusion study (REFERENCE.md section 12) as benchmarks: CIL- vs DIL-minibatches.

Joint training on every class (one task), with the minibatches grouped by virtual task (`cil`: each batch
holds one virtual task's classes, round-robin over tasks), by class-stratified shard (`dil`: each batch spans
all classes), or shuffled (`offline`, the reference's `-cs 100` line). LA / TP / WP come from one linear probe
over all classes with TP / WP on the virtual split (`eval_task_sizes`). The expected finding: CIL-minibatches
give much lower TP than DIL-minibatches at similar WP, more so for SSL than for the supervised reference.

CIFAR-100 values follow the study's own table (section 12), not section 10: Barlow LARS 0.1; BYOL LARS 4.0
(1.0 x 1024 / 256) with a 10-epoch warmup, min_lr 1e-3, wd 1e-6, batch 1024; SimCLR LARS 0.6, batch 512;
CorInfoMax SGD 0.5, 10-epoch warmup, cosine to 1e-6, batch 512, 4096-4096-128, α 1000, GroupNorm + WS;
supervised SGD 0.075, batch 128, 200 epochs. Not expressible here and left at this project's behaviour: the
study's BYOL augmentations (stronger jitter, blur p 0.5, ImageNet statistics) and CorInfoMax's warmup start
3e-3 (the warmup starts from min_lr here). Values the table does not state keep section 10's.
"""

from __future__ import annotations

from typing import Any

from benchmarks.embedded import SMALL
from cromo_bench.benchmark import BenchmarkSpec

CONFUSION_OBJECTIVES = ("barlow", "corinfomax", "simclr", "byol", "supervised")

_CIFAR100: dict[str, dict[str, Any]] = {
    "barlow": {"optimizer": "lars", "lr": 0.1, "weight_decay": 1e-4, "batch_size": 256,
               "proj_hidden": 2048, "proj_out": 2048, "norm": "bn", "weight_standardization": False},
    "byol": {"optimizer": "lars", "lr": 4.0, "weight_decay": 1e-6, "batch_size": 1024, "warmup_epochs": 10,
             "min_lr": 1e-3, "proj_hidden": 4096, "proj_out": 256, "pred_hidden": 4096, "norm": "gn",
             "weight_standardization": True, "ema_base": 0.99},
    "simclr": {"optimizer": "lars", "lr": 0.6, "weight_decay": 5e-4, "batch_size": 512,
               "proj_hidden": 2048, "proj_out": 128, "temperature": 0.5, "norm": "bn",
               "weight_standardization": False},
    "corinfomax": {"optimizer": "sgd", "lr": 0.5, "weight_decay": 1e-4, "batch_size": 512,
                   "warmup_epochs": 10, "min_lr": 1e-6, "proj_hidden": 4096, "proj_out": 128,
                   "cim_alpha": 1000.0, "norm": "gn", "weight_standardization": True},
    "supervised": {"optimizer": "sgd", "lr": 0.075, "weight_decay": 5e-4, "batch_size": 128, "norm": "gn",
                   "weight_standardization": True, "epochs_first": 200, "epochs_later": 200},
}

_CIFAR100_COMMON = {
    "backbone": "resnet18", "width": 64, "image_size": 32,
    "eval_task_sizes": (10,) * 10,
    "probe_mode": "paper", "probe_epochs": 100, "probe_lr": 0.2, "probe_batch_size": 256,
}

# digits: the embedded network and the probe, 5 virtual tasks of 2 classes
_DIGITS: dict[str, dict[str, Any]] = {
    "barlow": {"lr": 0.1},
    "simclr": {"lr": 0.3},
    "byol": {"lr": 0.3, "norm": "bn", "weight_standardization": False},
    "corinfomax": {"lr": 0.1, "proj_out": 32},
    "supervised": {"lr": 0.05, "norm": "bn", "weight_standardization": False},
}


def _cifar100(mode: str, label: str) -> BenchmarkSpec:
    return BenchmarkSpec(
        name=f"confusion-cifar100-{label}",
        version=3,
        description=f"task confusion: CIFAR-100 jointly for 1000 epochs with {mode.upper()}-minibatches "
                    "over 10 virtual tasks of 10 classes; TP/WP on that 10x10 split" if mode != "random" else
                    "task confusion: CIFAR-100 jointly for 1000 epochs, shuffled minibatches (offline "
                    "reference); TP/WP on the 10x10 split",
        dataset="cifar100",
        task_sizes=(100,),
        epochs=(1000, 1000),
        defaults=_CIFAR100_COMMON | {"minibatch": mode},
        per_objective=_CIFAR100,
    )


def _digits(mode: str, label: str) -> BenchmarkSpec:
    return BenchmarkSpec(
        name=f"confusion-digits-{label}",
        version=3,
        description=f"task confusion on the embedded digits: all 10 classes jointly, {label} minibatches "
                    "(virtual tasks: 5 x 2 classes); TP/WP on that 5x2 split",
        dataset="digits",
        task_sizes=(10,),
        epochs=(10, 10),
        defaults=SMALL | {"eval_task_sizes": (2,) * 5, "minibatch": mode, "memory": 0},
        per_objective=_DIGITS,
    )


CONFUSION_CIFAR100_CIL = _cifar100("cil", "cil")
CONFUSION_CIFAR100_DIL = _cifar100("dil", "dil")
CONFUSION_CIFAR100_OFFLINE = _cifar100("random", "offline")
CONFUSION_DIGITS_CIL = _digits("cil", "cil")
CONFUSION_DIGITS_DIL = _digits("dil", "dil")
CONFUSION_DIGITS_OFFLINE = _digits("random", "offline")

CONFUSION_BENCHMARKS = (CONFUSION_CIFAR100_CIL, CONFUSION_CIFAR100_DIL, CONFUSION_CIFAR100_OFFLINE,
                        CONFUSION_DIGITS_CIL, CONFUSION_DIGITS_DIL, CONFUSION_DIGITS_OFFLINE)
