"""`cifar10-cpu-5x2`: real CIFAR-10 images at a size a laptop CPU trains in minutes.

5 tasks x 2 classes, the first 500 training images of each class (the full 10,000-image test set), a CIFAR
ResNet-18 at width 16 (128-d features), small projectors, 10 epochs per task and the fast probe. Not a paper
setting: a real-image smoke test between the embedded digits and the GPU benchmarks. The data come from
torchvision's download or from an ImageFolder tree (`--data-dir DIR` with DIR/train/<class>/ and
DIR/test/<class>/).
"""

from __future__ import annotations

from cromo_bench.benchmark import BenchmarkSpec

_CPU = {
    "backbone": "resnet18",
    "width": 16,
    "image_size": 32,
    "subset_per_class": 500,
    "proj_hidden": 256,
    "proj_out": 256,
    "pred_hidden": 256,
    "distill_hidden": 256,
    "batch_size": 128,
    "replay_bs": 32,
    "memory": 100,
    "buffer_policy": "per_task",
    "probe_mode": "fast",
    "probe_epochs": 100,
    "probe_batch_size": 256,
    "knn_k": 50,
}

CIFAR10_CPU_5X2 = BenchmarkSpec(
    name="cifar10-cpu-5x2",
    version=2,
    description="CIFAR-10 on a CPU: 5 tasks x 2 classes, 500 images per class, ResNet-18 width 16, 10 epochs",
    dataset="cifar10",
    task_sizes=(2,) * 5,
    epochs=(10, 10),
    defaults=_CPU,
    per_objective={
        "barlow": {"optimizer": "lars", "lr": 0.2},
        "simclr": {"optimizer": "lars", "lr": 0.5, "temperature": 0.5},
        "byol": {"optimizer": "lars", "lr": 0.5, "norm": "bn", "weight_standardization": False,
                 "warmup_epochs": 2, "min_lr": 1e-3},
        "corinfomax": {"optimizer": "sgd", "lr": 0.1, "proj_out": 64},
    },
)

FOLDER = BenchmarkSpec(
    name="folder",
    version=2,
    description="any ImageFolder tree (--data-dir DIR with train/ and val/ or test/); set the split with "
    "--set task_sizes=a,b,...",
    dataset="folder",
    task_sizes=(2,) * 5,  # a placeholder: the tree's class count decides; a mismatch says what is allowed
    epochs=(10, 10),
    defaults={**_CPU, "subset_per_class": 0},
    per_objective=CIFAR10_CPU_5X2.per_objective,
)
