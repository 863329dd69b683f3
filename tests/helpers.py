"""Tiny settings that make a digits run take seconds on one CPU thread."""

from __future__ import annotations

TINY_SETS = [
    "subset_per_class=24",
    "width=4",
    "proj_hidden=32",
    "proj_out=32",
    "pred_hidden=32",
    "distill_hidden=32",
    "batch_size=16",
    "replay_bs=8",
    "memory=8",
    "probe_epochs=10",
    "knn_k=10",
]


def tiny_args(epochs: int = 1) -> list[str]:
    out = ["--epochs", str(epochs), "--quiet"]
    for s in TINY_SETS:
        out += ["--set", s]
    return out
