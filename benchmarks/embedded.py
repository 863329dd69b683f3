"""The embedded benchmark: scikit-learn's digits, 5 tasks x 2 classes, small enough for a 2-core CPU."""

from __future__ import annotations

from cromo_bench.benchmark import BenchmarkSpec

# One small network for every objective, so a run takes about a minute on two CPU cores.
_SMALL = {
    "image_size": 16,
    "width": 8,
    "proj_hidden": 128,
    "proj_out": 128,
    "pred_hidden": 128,
    "distill_hidden": 128,
    "batch_size": 64,
    "replay_bs": 32,
    "memory": 40,
    "probe_epochs": 100,
    "probe_batch_size": 128,
    "knn_k": 50,
}

SMALL = _SMALL  # shared with the digits versions of the task-confusion study

DIGITS_5X2 = BenchmarkSpec(
    name="digits-5x2",
    version=2,
    description="scikit-learn digits (1,797 8x8 images upsampled to 16x16), 5 tasks x 2 classes, "
                "natural order",
    dataset="digits",
    task_sizes=(2, 2, 2, 2, 2),
    epochs=(6, 6),
    defaults=_SMALL,
    per_objective={
        "barlow": {"lr": 0.1},
        "simclr": {"lr": 0.3, "batch_size": 64},
        "byol": {"lr": 0.3, "norm": "bn"},
        "corinfomax": {"lr": 0.1, "proj_out": 32},
    },
    seeds=(0, 1, 2),
)
